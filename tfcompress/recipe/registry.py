"""The recipe stage registry: stage name -> (options dataclass, `fn(state, config)`)."""
from tfcompress.errors import InputError

_STAGES = {}


def register_stage(name, config_cls):
    """Registers `fn(state, config)` as the recipe stage `name`, its options a dataclass.

    Use as a decorator. `state` is the run's `tfcompress.recipe.state.RunState`; `config` an instance of
    `config_cls` built from the step's options by `tfcompress.recipe.schema.load_config`.

    Example:

    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class HelloConfig:
    ...     greeting: str = "hello"
    >>> @register_stage("hello_doctest", HelloConfig)
    ... def hello(state, config):
    ...     state.echo(config.greeting)
    >>> stages()["hello_doctest"] == (HelloConfig, hello)
    True
    >>> unregister_stage("hello_doctest")

    Args:
      name: the stage's name in a recipe's `steps`.
      config_cls: the dataclass of its options.

    Returns:
      A decorator that registers the function and returns it unchanged.

    Raises:
      InputError: `name` is not a non-empty string.
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"a stage name is a non-empty string. Got: {name!r}")

    def deco(fn):
        _STAGES[name] = (config_cls, fn)
        return fn
    return deco


def unregister_stage(name):
    """Removes the stage `name` (a no-op when it is not registered)."""
    _STAGES.pop(name, None)


def stages():
    """A copy of the registry: {stage name: (config class, function)}."""
    return dict(_STAGES)


def lookup(name, where):
    """(config class, function) of stage `name`.

    Raises:
      InputError: no such stage; `where` (e.g. `steps[2]`) starts the message, which lists the known ones.
    """
    if name not in _STAGES:
        raise InputError(f"{where}: unknown stage {name!r}; known stages: {', '.join(sorted(_STAGES))}")
    return _STAGES[name]
