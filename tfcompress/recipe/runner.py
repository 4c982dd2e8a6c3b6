"""Runs recipes: imports the stages, checks a recipe's steps against them, and runs the steps in order on
one `RunState`, writing `summary.json`, the run report (`report.md` and its PNGs) and the console summary at
the end."""
import dataclasses
import importlib
import json
import os
import pkgutil
import typing

from tfcompress.errors import InputError
from tfcompress.recipe import registry, schema
from tfcompress.recipe.state import RunState, build_model, format_row


@dataclasses.dataclass
class RecipeRun(RunState):
    """The `RunState` of a run of the runner: what the stages share, plus what the runner itself knows, which
    its summary adds to `RunState.summary()` for the run report.

    Attributes:
      machine: `tfcompress.machine.describe()` of the machine the run ran on.
      row_files: one `{"file", "mode"}` per row of `rows`: the .tflite file its stage wrote or measured and
        its export mode (`{}` for a row that measured no file).
    """
    machine: typing.Optional[dict] = None
    row_files: list = dataclasses.field(default_factory=list)

    def summary(self):
        return {**super().summary(), "machine": self.machine, "row_files": self.row_files}


def _measured(state, before):
    """`{"file", "mode"}` of the .tflite file a step measured: the one its size report read, else the one its
    export report describes, else the one it wrote (a new or replaced entry of `state.files`); `before` is
    `(len(state.sizes), len(state.reports), dict(state.files))` from before the step."""
    sizes, reports, files = before
    if len(state.sizes) > sizes:
        path = state.sizes[-1].get("path")
    elif len(state.reports) > reports:
        path = state.reports[-1].path
    else:
        path = next((p for m, p in state.files.items() if files.get(m) != p and str(p).endswith(".tflite")), None)
    if path is None:
        return {}
    return {"file": path, "mode": next((m for m, p in state.files.items() if p == path and m != "keras"), None)}


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
    from tfcompress.machine import describe
    return RecipeRun(recipe=recipe, out=out, echo=echo, model=model, train=split["train"], test=split["test"],
                     machine=describe())


def finish(state):
    """Writes `OUT/summary.json` and, from what it holds, the run report (`OUT/report.md` and its PNGs);
    prints the summary table with each row's size, latency and accuracy against the float32 file. Returns
    the summary's path."""
    from tfcompress import run_report
    from tfcompress.fileio import write_text
    from tfcompress.run_report import table
    path = os.path.join(state.out, run_report.SUMMARY)
    summary = state.summary()
    if "machine" not in summary:  # a plain RunState: the machine is this one
        from tfcompress.machine import describe
        summary["machine"] = describe()
    text = json.dumps(summary, indent=2, default=float)
    write_text(path, text)
    summary = json.loads(text)  # the report reads what summary.json holds, as `tfcompress report` does
    rows = table.rows(summary)
    ref = table.reference(rows)
    state.echo("\nsummary" + (f" (against {table.name(ref.file)}: size ×, median latency ×, accuracy Δ)"
                              if ref is not None else ""))
    for row, facts in zip(state.rows, rows):
        state.echo(f"  {row['stage']:<16} {format_row(row)}{table.console_suffix(facts, ref)}")
    if summary.get("machine"):
        from tfcompress.machine import line
        state.echo(f"  machine: {line(summary['machine'])}")
    report, images = run_report.write(state.out, summary)
    state.echo(f"  written: {report} ({len(images)} picture{'' if len(images) == 1 else 's'} beside it)")
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
        rows, before = len(state.rows), (len(state.sizes), len(state.reports), dict(state.files))
        registry.lookup(name, f"steps[{i}]")[1](state, config)
        state.row_files += [_measured(state, before)] * (len(state.rows) - rows)
    finish(state)
    return state
