"""YAML recipes: a whole pipeline (train, compress, export, benchmark) in one file.

A recipe names its data, its model, an output folder and a list of steps; each step is one stage
with its own options. Unknown keys and wrong types are refused before anything runs, with the key's
path in the message. See recipes/README.md for the format.
"""
import dataclasses
import os
import types
import typing

from tfcompress.errors import InputError

_STAGES = {}


def register_stage(name, config_cls):
    """Registers `fn(state, config)` as the recipe stage `name`, its options a dataclass."""
    def deco(fn):
        _STAGES[name] = (config_cls, fn)
        return fn
    return deco


def stages():
    return dict(_STAGES)


# -- typed loading of dataclass configs --------------------------------------------------------

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
    """Builds dataclass `cls` from a dict, naming the key of any unknown option or wrong type."""
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


# -- the recipe itself -------------------------------------------------------------------------

@dataclasses.dataclass
class DataConfig:
    spec: str = "digits"
    input_shape: typing.Optional[list] = None   # resize images to this (H, W, C); default: the model's


@dataclasses.dataclass
class ModelConfig:
    build: typing.Optional[str] = None           # a name from tfcompress.models.REGISTRY
    path: typing.Optional[str] = None            # or a saved model
    args: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if (self.build is None) == (self.path is None):
            raise InputError("give exactly one of build (a reference model name) or path (a saved model)")


@dataclasses.dataclass
class Recipe:
    name: str
    steps: list
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: typing.Optional[ModelConfig] = None
    output: str = "out"
    seed: int = 0
    description: str = ""


def parse(text, source="recipe"):
    """Parses and validates a recipe; returns (Recipe, [(stage name, config), ...])."""
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
    recipe = load_config(Recipe, raw, "recipe")
    _load_stage_modules()
    steps = []
    for i, step in enumerate(recipe.steps):
        if isinstance(step, str):
            step = {step: {}}
        if not isinstance(step, dict) or len(step) != 1:
            raise InputError(f"steps[{i}]: each step is one stage name with its options, e.g. '- train: {{epochs: 5}}'")
        (name, options), = step.items()
        if name not in _STAGES:
            raise InputError(f"steps[{i}]: unknown stage {name!r}; known stages: {', '.join(sorted(_STAGES))}")
        steps.append((name, load_config(_STAGES[name][0], options, f"steps[{i}].{name}")))
    return recipe, steps


def load(path):
    if not os.path.isfile(path):
        raise InputError(f"recipe not found: {path}")
    with open(path, encoding="utf-8") as f:
        try:
            text = f.read()
        except UnicodeDecodeError:
            raise InputError(f"{path} is not a text file") from None
    return parse(text, source=path)


def _load_stage_modules():
    import importlib
    import pkgutil

    from tfcompress import stages as package
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"tfcompress.stages.{info.name}")


def run(path, out=None, echo=print):
    """Runs a recipe file; returns the final state (a dict of what the stages produced)."""
    recipe, steps = load(path)
    from tfcompress.stages import core
    state = core.start(recipe, out or recipe.output, echo)
    for i, (name, config) in enumerate(steps):
        echo(f"[{i + 1}/{len(steps)}] {name}")
        _STAGES[name][1](state, config)
    core.finish(state)
    return state
