"""`CompressionCallback`: the one callback that drives every compression schedule inside `fit`.

Each technique registers a *driver factory* with `register_driver`. At the start of training the
callback asks every factory for a driver over the model being trained (nested models such as a
Distiller's student included); a factory returns None when the model holds none of its wrappers.
A driver may implement `on_train_begin()`, `on_train_batch_begin(step)`, `on_epoch_end(epoch)`,
`on_train_end()` and `summaries() -> {tag: value}` (written to TensorBoard when `log_dir` is set).
"""
from tfcompress._tf import keras, tf

_FACTORIES = []


def register_driver(factory):
    """Registers `factory(model) -> driver | None`; returns the factory (usable as a decorator)."""
    if factory not in _FACTORIES:
        _FACTORIES.append(factory)
    return factory


def iter_layers(model):
    """Every layer of a model, descending into nested models and wrappers' inner models."""
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)


class CompressionCallback(keras.callbacks.Callback):
    """Drives pruning, channel-pruning and clustering schedules during `fit`.

    Training a model that holds tfcompress wrappers without this callback fails with an error that
    names it.

    Example:

    ```python
    model = tfc.prune(model, tfc.PolynomialDecay(0.8, end_step=1000))
    model.fit(x, y, callbacks=[tfc.CompressionCallback(log_dir="logs")])
    ```

    Args:
      log_dir: folder for TensorBoard summaries (per-layer sparsity at the end of each epoch), or None
        for no summaries. Defaults to `None`.
    """

    def __init__(self, log_dir=None):
        super().__init__()
        self.log_dir = log_dir
        # the batch hook reads no logs: without this Keras copies the metrics to NumPy after every step,
        # which stalls the training loop on each batch
        self._supports_tf_logs = True
        self._drivers = []
        self._writer = None

    def _call(self, name, *args):
        for d in self._drivers:
            fn = getattr(d, name, None)
            if fn is not None:
                fn(*args)

    def on_train_begin(self, logs=None):
        self._drivers = [d for d in (f(self.model) for f in _FACTORIES) if d is not None]
        if self.log_dir and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        self._call("on_train_begin")

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch)

    def on_epoch_end(self, epoch, logs=None):
        self._call("on_epoch_end", epoch)
        if self._writer is not None:
            step = int(self.model.optimizer.iterations.numpy()) if self.model.optimizer else epoch
            with self._writer.as_default(step=step):
                for d in self._drivers:
                    for tag, value in (d.summaries() if hasattr(d, "summaries") else {}).items():
                        tf.summary.scalar(tag, value)
            self._writer.flush()

    def on_train_end(self, logs=None):
        self._call("on_train_end")
