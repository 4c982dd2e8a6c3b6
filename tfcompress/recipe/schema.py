"""The recipe format as typed dataclasses, and the loader that builds any options dataclass from YAML.

Unknown keys and wrong types are refused with the key's path in the message
(`steps[1].prune.epochs: expected int. Got: 'many'`). See recipes/README.md for the format.
"""
import dataclasses
import types
import typing

from tfcompress.errors import InputError
from tfcompress.recipe import registry


def _type_ok(value, tp):
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return isinstance(value, (list, tuple)) and (not args or all(_type_ok(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    return isinstance(value, tp)


def _type_name(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp)).replace("typing.", "")


def load_config(cls, data, where):
    """Builds dataclass `cls` from a mapping, naming the key of any unknown option or wrong type.

    Example:

    >>> load_config(DataConfig, {"spec": "npz:x.npz"}, "data")
    DataConfig(spec='npz:x.npz', input_shape=None)
    >>> load_config(DataConfig, {"spec": 3}, "data")
    Traceback (most recent call last):
    ...
    tfcompress.errors.InputError: data.spec: expected str. Got: 3

    Args:
      cls: the dataclass; its field annotations are the types checked.
      data: the options, a mapping; `None` means no options.
      where: the key path of `data` in the recipe, starting every message.

    Returns:
      An instance of `cls`.

    Raises:
      InputError: `data` is not a mapping, has an unknown key or a value of the wrong type, misses a
        required key, or `cls` refuses the values (its `__post_init__`).
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping of options. Got: {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in fields:
            raise InputError(f"{where}.{key}: unknown key; known keys: {', '.join(sorted(fields))}")
        if not _type_ok(value, hints[key]):
            raise InputError(f"{where}.{key}: expected {_type_name(hints[key])}. Got: {value!r}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise InputError(f"{where}: missing key {missing[0]}")
    try:
        return cls(**data)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


@dataclasses.dataclass
class DataConfig:
    """The recipe's data: a data spec as on the command line, optionally resized to `input_shape`."""
    spec: str = "digits"
    input_shape: typing.Optional[list] = None   # resize images to this (H, W, C); default: the model's


@dataclasses.dataclass
class ModelConfig:
    """A model to start from: a reference model by name (with its arguments) or a saved model."""
    build: typing.Optional[str] = None           # a name from tfcompress.models.REGISTRY
    path: typing.Optional[str] = None            # or a saved model
    args: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if (self.build is None) == (self.path is None):
            raise InputError("give exactly one of build (a reference model name) or path (a saved model)")


@dataclasses.dataclass
class Recipe:
    """A whole recipe: its name, data, model, output folder and steps (still raw, see `parse_steps`)."""
    name: str
    steps: list
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: typing.Optional[ModelConfig] = None
    output: str = "out"
    seed: int = 0
    description: str = ""


def parse_recipe(text, source="recipe"):
    """Parses a recipe's YAML into a `Recipe` (its steps not yet checked against the stages).

    Raises:
      InputError: not YAML, not a mapping, or a bad key or value (the message names it).
    """
    import yaml
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise InputError(f"{source}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{source}: a recipe is a mapping with name, data, model, output and steps")
    raw = dict(raw)
    data = raw.pop("data", {})
    if isinstance(data, str):
        data = {"spec": data}
    raw["data"] = load_config(DataConfig, data, "data")
    if "model" not in raw:
        raise InputError("recipe: missing key model")
    raw["model"] = load_config(ModelConfig, raw["model"], "model")
    return load_config(Recipe, raw, "recipe")


def parse_steps(recipe):
    """[(stage name, options dataclass), ...] of a recipe's steps, checked against the registered stages.

    Raises:
      InputError: a step that is not one stage name with its options, an unknown stage, or bad options.
    """
    steps = []
    for i, step in enumerate(recipe.steps):
        if isinstance(step, str):
            step = {step: {}}
        if not isinstance(step, dict) or len(step) != 1:
            raise InputError(f"steps[{i}]: each step is one stage name with its options, e.g. '- train: {{epochs: 5}}'")
        (name, options), = step.items()
        config_cls, _ = registry.lookup(name, f"steps[{i}]")
        steps.append((name, load_config(config_cls, options, f"steps[{i}].{name}")))
    return steps
