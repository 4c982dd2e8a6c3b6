"""Recipe stages, one module per technique; each registers its stages with
`tfcompress.recipe.registry.register_stage` and uses `tfcompress.recipe.state` (`RunState`, `fit`,
`accuracy`, `record`). `tfcompress.recipe.runner` imports every module of this package when a recipe is
parsed; a stage module never imports the runner or `tfcompress.recipes`."""
