"""Recipe stages, one module per technique; each registers its stages with
`tfcompress.recipes.register_stage`. Every module in this package is imported when a recipe is parsed."""
