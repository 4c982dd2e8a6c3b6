"""The recipe engine, one concern per module.

`schema` loads a recipe's YAML into typed dataclasses; `registry` maps stage names to their config class
and function; `state` holds `RunState`, what the stages of one run share, and the helpers every stage
uses (`fit`, `accuracy`, `record`); `runner` imports the stages of `tfcompress.stages`, checks a
recipe's steps against them and runs them. Stage modules import `registry`, `schema` and `state`, never
`runner`, so no module of the engine imports one that imports it back. `tfcompress.recipes` is the
public face of the four.

This package imports no other module when imported.
"""
