"""Runs recipes: imports the stages, checks a recipe's steps against them, and runs the steps in order on
one `RunState`, writing `summary.json` at the end."""
import importlib
import json
import os
import pkgutil

from tfcompress.errors import InputError
from tfcompress.recipe import registry, schema
from tfcompress.recipe.state import RunState, build_model, format_row


def load_stages():
    """Imports every module of `tfcompress.stages`, each of which registers its stages."""
    from tfcompress import stages as package
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def parse(text, source="recipe"):
    """Parses and validates a recipe; returns `(Recipe, [(stage name, config), ...])`.

    Raises:
      InputError: bad YAML, an unknown key, stage or option, or a value of the wrong type (the message
        names its path, e.g. `steps[1].prune.epochs`).
    """
    recipe = schema.parse_recipe(text, source)
    load_stages()
    return recipe, schema.parse_steps(recipe)


def load(path):
    """`parse` of a recipe file.

    Raises:
      InputError: the file is missing or not text, or `parse` refuses it.
    """
    if not os.path.isfile(path):
        raise InputError(f"recipe not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            text = f.read()
        except UnicodeDecodeError:
            raise InputError(f"{path} is not a text file") from None
    return parse(text, source=path)


def start(recipe, out, echo=print):
    """The `RunState` a recipe starts from: seeded, its model built or loaded, both splits loaded and
    fitted to the model's input (or `recipe.data.input_shape`), the output folder created."""
    from tfcompress import data
    from tfcompress._tf import keras
    keras.utils.set_random_seed(recipe.seed)
    model = build_model(recipe.model, "model")
    if recipe.model.path:
        from tfcompress.saving import kind_note
        echo(f"  {kind_note(recipe.model.path)}")
    shape = (None, *recipe.data.input_shape) if recipe.data.input_shape else model.input_shape
    split = {}
    for name in ("train", "test"):
        x, y = data.load(recipe.data.spec, name)
        x, note = data.fit_to_input(x, shape)
        if note and name == "train":
            echo(f"  {note}")
        split[name] = (x, y)
    os.makedirs(out, exist_ok=True)
    return RunState(recipe=recipe, out=out, echo=echo, model=model, train=split["train"], test=split["test"])


def finish(state):
    """Writes `OUT/summary.json` and prints the summary table; returns the summary's path."""
    from tfcompress.fileio import write_text
    path = os.path.join(state.out, "summary.json")
    write_text(path, json.dumps(state.summary(), indent=2, default=float))
    state.echo("\nsummary")
    for row in state.rows:
        state.echo(f"  {row['stage']:<16} {format_row(row)}")
    state.echo(f"  written: {path}")
    return path


def run(path, out=None, echo=print):
    """Runs a recipe file.

    Args:
      path: the recipe (YAML).
      out: the output folder. Defaults to `None`: the recipe's `output`.
      echo: prints a line of progress. Defaults to `print`.

    Returns:
      The final `RunState`.

    Raises:
      InputError: the recipe is invalid, or a stage refuses its input.
    """
    recipe, steps = load(path)
    state = start(recipe, out or recipe.output, echo)
    for i, (name, config) in enumerate(steps):
        echo(f"[{i + 1}/{len(steps)}] {name}")
        registry.lookup(name, f"steps[{i}]")[1](state, config)
    finish(state)
    return state
