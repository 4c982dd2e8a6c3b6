"""YAML recipes: a whole pipeline (train, compress, export, benchmark) in one file.

A recipe names its data, its model, an output folder and a list of steps; each step is one stage
with its own options. Unknown keys and wrong types are refused before anything runs, with the key's
path in the message. See recipes/README.md for the format.

This module gathers the public names of the recipe engine (`tfcompress.recipe`): the format
(`tfcompress.recipe.schema`), the stage registry (`tfcompress.recipe.registry`), the run state and the
stage helpers (`tfcompress.recipe.state`) and the runner (`tfcompress.recipe.runner`). Stage modules
import those modules, not this one, because this one imports the runner, which imports the stages.
"""
from tfcompress.recipe.registry import register_stage, stages, unregister_stage
from tfcompress.recipe.runner import finish, load, load_stages, parse, run, start
from tfcompress.recipe.schema import DataConfig, ModelConfig, Recipe, load_config
from tfcompress.recipe.state import (RunState, TrainConfig, accuracy, build_model, compile_model, fit, optimizer,
                                     record)

__all__ = ["DataConfig", "ModelConfig", "Recipe", "RunState", "TrainConfig", "accuracy", "build_model",
           "compile_model", "finish", "fit", "load", "load_config", "load_stages", "optimizer", "parse",
           "record", "register_stage", "run", "stages", "start", "unregister_stage"]
