"""What the stages of one recipe run share (`RunState`), and the helpers every stage trains, scores and
reports with: `compile_model`, `fit`, `accuracy`, `record`, `build_model`."""
import dataclasses
import typing

from tfcompress.errors import InputError
from tfcompress.evaluation import keras_accuracy
from tfcompress.recipe.schema import Recipe

OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass
class RunState:
    """The state of one recipe run, handed from stage to stage.

    A stage reads the current `model` and the data, may replace `model`, and leaves what it measured in
    the fields below; `summary()` is what `summary.json` holds. Fields can also be read as
    `state["model"]`, as they could when the state was a dict.

    Attributes:
      recipe: the `Recipe` being run.
      out: the output folder.
      echo: prints one line of progress (`print` on the command line).
      model: the current tf_keras model; stages replace it.
      train, test: `(x, y)` arrays of the two splits, already fitted to the model's input.
      rows: one row per stage that measured something (`record`): `{"stage": name, **values}`.
      files: written files by kind: `"keras"` for a saved model, an export mode for a .tflite file.
      reports: the `ExportReport` of every export, in order.
      sparsity: {layer: zero fraction} of the last pruning (prune or distill stage). Defaults to `None`.
      clusters: {layer: distinct kernel values} after the cluster stage. Defaults to `None`.
      sizes: the size report dicts of the size stages, in order.
      bench: benchmark results (dicts) of the bench stage. Defaults to `None`.
      teacher: the teacher of the distill stage. Defaults to `None`.
    """
    recipe: Recipe
    out: str
    echo: typing.Callable[[str], typing.Any]
    model: typing.Any
    train: tuple
    test: tuple
    rows: list = dataclasses.field(default_factory=list)
    files: dict = dataclasses.field(default_factory=dict)
    reports: list = dataclasses.field(default_factory=list)
    sparsity: typing.Optional[dict] = None
    clusters: typing.Optional[dict] = None
    sizes: list = dataclasses.field(default_factory=list)
    bench: typing.Optional[list] = None
    teacher: typing.Any = None

    def summary(self):
        """What `summary.json` holds: recipe name, stage rows, files, sparsity, bench and export reports."""
        return {"recipe": self.recipe.name, "stages": self.rows, "files": self.files, "sparsity": self.sparsity,
                "bench": self.bench, "exports": [r.to_dict() for r in self.reports]}


@dataclasses.dataclass
class TrainConfig:
    """Options of a training run (the `train` stage, and every stage that fine-tunes)."""
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adam"

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"optimizer must be adam or sgd. Got: {self.optimizer!r}")
        if self.epochs < 0 or self.batch_size < 1 or self.learning_rate <= 0:
            raise InputError("epochs must be >= 0, batch_size >= 1 and learning_rate > 0. "
                             f"Got: {self.epochs}, {self.batch_size}, {self.learning_rate}")


def optimizer(name, learning_rate):
    """A new tf_keras optimizer: `adam` or `sgd` at `learning_rate`.

    Raises:
      InputError: another name.
    """
    from tfcompress._tf import keras
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD}
    if name not in classes:
        raise InputError(f"optimizer must be adam or sgd. Got: {name!r}")
    return classes[name](learning_rate)


def compile_model(model, learning_rate, optimizer_name="adam"):
    """Compiles a classifier with integer labels: sparse cross-entropy on logits, accuracy metric.

    Args:
      model: a tf_keras model whose output is logits.
      learning_rate: the optimizer's learning rate.
      optimizer_name: `adam` or `sgd`. Defaults to `adam`.
    """
    from tfcompress._tf import keras
    model.compile(optimizer(optimizer_name, learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])


def fit(state, config, callbacks=(), model=None):
    """Compiles and trains a model on the run's train split, quietly.

    Args:
      state: the `RunState`.
      config: a `TrainConfig` (or any object with its four fields).
      callbacks: Keras callbacks, e.g. `CompressionCallback()` for a wrapped model. Defaults to `()`.
      model: the model to train. Defaults to `None`: `state.model`.

    Returns:
      The Keras `History`.
    """
    model = state.model if model is None else model
    x, y = state.train
    compile_model(model, config.learning_rate, config.optimizer)
    return model.fit(x, y, epochs=config.epochs, batch_size=config.batch_size, verbose=0,
                     callbacks=list(callbacks))


def accuracy(state, model=None):
    """Top-1 accuracy on the run's test split of `model` (defaults to `None`: `state.model`)."""
    x, y = state.test
    return keras_accuracy(state.model if model is None else model, x, y)


def _format(values):
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in values)


def record(state, stage, **values):
    """Adds the row `{"stage": stage, **values}` to `state.rows` (and so to summary.json) and echoes it.

    Returns:
      The row.
    """
    row = {"stage": stage, **values}
    state.rows.append(row)
    state.echo("  " + _format((k, v) for k, v in row.items() if k != "stage"))
    return row


def format_row(row):
    """A row's values as one line (`accuracy 0.9500, bytes 1234`), leaving out the stage and `None`s."""
    return _format((k, v) for k, v in row.items() if k != "stage" and v is not None)


def build_model(config, where="model"):
    """The model of a `ModelConfig`: a reference model built with its arguments, or a saved model.

    Seed first (`keras.utils.set_random_seed`) for reproducible initial weights.

    Args:
      config: a `tfcompress.recipe.schema.ModelConfig`.
      where: its key in the recipe, starting error messages. Defaults to `model`.

    Raises:
      InputError: an unknown reference model name, or a saved model that does not load.
    """
    from tfcompress import models
    if config.build:
        if config.build not in models.REGISTRY:
            raise InputError(f"{where}.build: unknown model {config.build!r}; choose one of "
                             f"{', '.join(models.REGISTRY)}")
        args = dict(config.args)
        if "input_shape" in args:
            args["input_shape"] = tuple(args["input_shape"])
        if "blocks" in args:
            args["blocks"] = tuple(tuple(b) for b in args["blocks"])
        return models.REGISTRY[config.build](**args)
    from tfcompress.saving import load_model
    return load_model(config.path)
