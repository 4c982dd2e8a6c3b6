"""`Distiller`: knowledge distillation (Hinton et al., 2015) inside `fit`.

The Distiller is a `keras.Model` whose `fit` trains a student on a frozen teacher's softened outputs.
The student may carry pruning, clustering or QAT wrappers: `CompressionCallback` finds them inside the
Distiller (it descends into nested models) and drives them in the same `fit`.

Loss per sample, T the temperature:

    alpha · T² · KL(p_t ‖ softmax(s / T)) + (1 − alpha) · CE(y, s) + feature_weight · Σ_i MSE_i

where `s` are the student's logits, `p_t = mean_k softmax(t_k / T)` over the teachers (one teacher,
or an ensemble averaged in probability space), and `MSE_i` is the mean squared difference between a
teacher feature map and the student's (through a learned 1×1 projection when the channel counts
differ). The batch loss is the mean over the batch (with sample weights: Σ w·loss / batch size, as
Keras does).

Logits or probabilities at an output. A model's output is taken as probabilities when its output
layer (looking through wrappers and nested models) ends in a softmax activation or is a `Softmax`
layer; otherwise, on the first batch that `fit`, `evaluate`, `train_on_batch` or `test_on_batch`
sees, when every output of the probe batch is non-negative and every row sums to 1 (within 1e-3).
Anything else is logits. Probabilities are turned into logits by `log(max(p, 1e-30))`, which gives the
same softened distribution as the original logits (softmax is invariant to the per-row shift
`log Σ exp`). `Distiller.output_kinds` says what was detected and why; `teacher_outputs=` and
`student_outputs=` override the detection. A sigmoid output is refused: distillation here needs one
distribution over classes per sample.

The teacher is frozen without touching it: it is not tracked by the Distiller (so its variables are
not trained, saved or driven by `CompressionCallback`), it always runs with `training=False` (batch
norm statistics and dropout fixed) and its outputs are behind `tf.stop_gradient`.
"""
import numpy as np

from tfcompress._tf import check_model, keras, tf
from tfcompress.errors import InputError

KINDS = ("logits", "probabilities")
PROBE_SAMPLES = 64
_LOG_FLOOR = 1e-30
_NO_LABELS = ("alpha={alpha} < 1 needs labels for the (1 - alpha) · CE term: pass y (or a dataset of (x, y)), "
              "or use alpha=1.0 to distil on an unlabeled transfer set")


def _hide(obj, name, value):
    """Sets an attribute that Keras does not track (no weights, no saving, no sub-layer listing)."""
    object.__setattr__(obj, name, value)


def _single_output_shape(model, what):
    try:
        shape = model.output_shape
    except (AttributeError, RuntimeError):
        raise InputError(f"{what} is not built: call it on a batch or give it an Input before distilling") from None
    if isinstance(shape, list):
        if len(shape) != 1:
            raise InputError(f"{what} has {len(shape)} outputs; the Distiller needs one output of class scores")
        shape = shape[0]
    return tuple(shape[1:])


def _input_shape(model):
    try:
        shape = model.input_shape
    except (AttributeError, RuntimeError):
        return None
    return tuple(shape[1:]) if isinstance(shape, tuple) else None


def _output_layer(model):
    """The layer producing a single-output model's output, through nested models and wrappers."""
    outputs = getattr(model, "outputs", None) or []
    history = getattr(outputs[0], "_keras_history", None) if len(outputs) == 1 else None
    layer = history.layer if history is not None else (model.layers[-1] if model.layers else None)
    while True:
        if isinstance(layer, keras.Model) and layer is not model:
            return _output_layer(layer)
        inner = getattr(layer, "layer", None)  # pruning, clustering and QAT wrappers hold `.layer`
        if isinstance(inner, keras.layers.Layer):
            layer = inner
            continue
        return layer


def _activation_name(layer):
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    act = getattr(layer, "activation", None)
    for _ in range(3):  # QAT replaces `activation` with an object that holds the original one
        name = getattr(act, "__name__", None)
        if name:
            return name
        act = getattr(act, "activation", None)
    return None


def _structural_kind(model, what):
    """('probabilities', why) for a softmax at the output, (None, why) when only a probe can tell."""
    layer = _output_layer(model)
    name = _activation_name(layer) if layer is not None else None
    where = f"output layer {layer.name!r}" if layer is not None else "output"
    if name == "softmax":
        return "probabilities", f"{where} ends in softmax"
    if name in ("sigmoid", "hard_sigmoid"):
        raise InputError(f"{what}'s {where} ends in {name}; the Distiller needs class logits or softmax "
                         "probabilities: remove the final activation (train with from_logits=True)")
    return None, f"{where} has activation {name or 'none'}"


def _probe_kind(values):
    values = np.asarray(values, dtype=np.float64)
    if values.size and np.all(values >= 0) and np.allclose(values.sum(-1), 1.0, atol=1e-3):
        return "probabilities", "probe batch outputs are non-negative and each row sums to 1"
    return "logits", "probe batch outputs are not a distribution (negative values or rows not summing to 1)"


def _find_layer(model, ref):
    """The top-level layer of `model` that is `ref`, wraps `ref`, or is (or wraps) a layer named `ref`."""
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        if isinstance(ref, str):
            if layer.name == ref or (isinstance(inner, keras.layers.Layer) and inner.name == ref):
                return layer
        elif layer is ref or inner is ref:
            return layer
    return None


def _layer_output(model, layer, what):
    try:
        return layer.output
    except AttributeError:
        raise InputError(f"{what} layer {layer.name!r} is called more than once in {model.name!r}; "
                         "name a layer with a single output") from None


def _feature_model(model, layers, what):
    """A model sharing `model`'s layers that returns [output, *feature maps]."""
    if not layers:
        return None
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise InputError(f"features need a Sequential or functional {what}. Got: {type(model).__name__}")
    outs = [_layer_output(model, l, what) for l in layers]
    return keras.Model(model.inputs, [model.outputs[0], *outs], name=f"{model.name}_features")


def _reduce(per_sample, sample_weight):
    """Keras' SUM_OVER_BATCH_SIZE: Σ w·l / batch size (the plain mean without weights)."""
    if sample_weight is None:
        return tf.reduce_mean(per_sample)
    w = tf.reshape(tf.cast(sample_weight, per_sample.dtype), [-1])
    return tf.reduce_sum(per_sample * w) / tf.cast(tf.size(per_sample), per_sample.dtype)


def _to_logits(values, kind):
    values = tf.cast(values, tf.float32)
    return tf.math.log(tf.maximum(values, _LOG_FLOOR)) if kind == "probabilities" else values


class Distiller(keras.Model):
    """Trains a student on a frozen teacher's (or ensemble's) softened outputs, in `fit`.

    `fit` minimises `alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · CE(y, s)` plus the
    hint losses of `features`. With `alpha=1.0` no labels are needed: `fit(x)` distils on an
    unlabeled transfer set. Compile with an optimizer and metrics only (the loss is the Distiller's).
    `distiller.student` is the student, trained in place; `save`, `save_weights` and `load_weights`
    act on the student; `predict` and `evaluate` run the student. Logs: `loss` (the total, with the
    student's regularization losses), `distillation_loss` (T²·KL), `student_loss` (CE, when labels
    are given), `feature_loss` (when `features` is set) and the compiled metrics on the student.

    Example:

    ```python
    student = tfc.prune(student, tfc.PolynomialDecay(0.5, end_step=1000))
    distiller = tfc.Distiller(student, teacher, temperature=4.0, alpha=0.9)
    distiller.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    distiller.fit(x, y, epochs=10, callbacks=[tfc.CompressionCallback()])
    tfc.export(tfc.strip(distiller.student), "student.tflite", representative_data=x[:256])
    ```

    Args:
      student: the tf_keras model to train (built; one output of class scores, logits preferred). It
        may carry pruning, clustering or QAT wrappers.
      teacher: a tf_keras model, or a list of them (an ensemble: the softened probabilities are
        averaged). Same input and output shapes as the student.
      temperature: T > 0; the softmax temperature of both sides of the KL term. Defaults to `4.0`.
      alpha: weight of the distillation term, in [0, 1]; `1.0` needs no labels. Defaults to `0.9`.
      features: `[(teacher_layer, student_layer), ...]` hint pairs (layer objects or names; a
        wrapped layer may be named by its inner layer's name). Feature maps must agree in every
        dimension but the last; when the last differs, a learned 1×1 projection (a Dense on the last
        axis, trained with the student, not part of it) maps the student's to the teacher's. With an
        ensemble, a name must exist in exactly one teacher. Defaults to `None`.
      feature_weight: weight of the summed hint losses. Defaults to `1.0`.
      teacher_outputs: `"logits"` or `"probabilities"` for every teacher, overriding detection.
        Defaults to `None` (detect).
      student_outputs: the same for the student. Defaults to `None` (detect).
      name: the model name. Defaults to `"distiller"`.

    Raises:
      InputError: a teacher whose output or input shape differs from the student's, a bad
        temperature, alpha or feature pair, a sigmoid output, or a teacher that is the student.
      UnsupportedModelError: a model that is not tf_keras.
    """

    def __init__(self, student, teacher, temperature=4.0, alpha=0.9, features=None, feature_weight=1.0,
                 teacher_outputs=None, student_outputs=None, name="distiller", **kwargs):
        super().__init__(name=name, **kwargs)
        check_model(student, "student")
        teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
        if not teachers:
            raise InputError("teacher must be a model or a non-empty list of models. Got: []")
        for i, t in enumerate(teachers):
            check_model(t, "teacher" if len(teachers) == 1 else f"teacher[{i}]")
            if t is student:
                raise InputError("the teacher is the student itself; give a separately trained teacher")
        for value, label in ((temperature, "temperature"), (alpha, "alpha"), (feature_weight, "feature_weight")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise InputError(f"{label} must be a number. Got: {value!r}")
        if temperature <= 0:
            raise InputError(f"temperature must be > 0. Got: {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1]. Got: {alpha}")
        if feature_weight < 0:
            raise InputError(f"feature_weight must be >= 0. Got: {feature_weight}")
        for value, label in ((teacher_outputs, "teacher_outputs"), (student_outputs, "student_outputs")):
            if value is not None and value not in KINDS:
                raise InputError(f"{label} must be 'logits', 'probabilities' or None. Got: {value!r}")
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.feature_weight = float(feature_weight)
        self.student = student
        _hide(self, "_teachers", teachers)
        self._check_shapes()
        self._detect_structure(teacher_outputs, student_outputs)
        self._build_features(features or [])
        _hide(self, "_trackers", {n: keras.metrics.Mean(name=n) for n in
                                  ("loss", "distillation_loss", "student_loss", "feature_loss")})
        self.built = True

    # -- construction ------------------------------------------------------------------------

    @property
    def teacher(self):
        """The teacher, or the list of teachers of an ensemble."""
        return self._teachers[0] if len(self._teachers) == 1 else list(self._teachers)

    @property
    def teachers(self):
        return list(self._teachers)

    def _teacher_label(self, i):
        return "teacher" if len(self._teachers) == 1 else f"teacher[{i}]"

    def _check_shapes(self):
        s_out = _single_output_shape(self.student, "student")
        s_in = _input_shape(self.student)
        for i, t in enumerate(self._teachers):
            label = self._teacher_label(i)
            t_out = _single_output_shape(t, label)
            if t_out != s_out:
                raise InputError(f"{label} {t.name!r} outputs shape {t_out} but student {self.student.name!r} "
                                 f"outputs {s_out}; the KL term needs the same classes in the same order")
            t_in = _input_shape(t)
            if s_in is not None and t_in is not None and t_in != s_in:
                raise InputError(f"{label} {t.name!r} takes input shape {t_in} but student "
                                 f"{self.student.name!r} takes {s_in}; both are fed the same batches")

    def _detect_structure(self, teacher_outputs, student_outputs):
        kinds = {"student": None, "teachers": [None] * len(self._teachers)}
        why = {"student": None, "teachers": [None] * len(self._teachers)}
        if student_outputs:
            kinds["student"], why["student"] = student_outputs, "given by student_outputs"
        else:
            kinds["student"], why["student"] = _structural_kind(self.student, "student")
        for i, t in enumerate(self._teachers):
            if teacher_outputs:
                kinds["teachers"][i], why["teachers"][i] = teacher_outputs, "given by teacher_outputs"
            else:
                kinds["teachers"][i], why["teachers"][i] = _structural_kind(t, self._teacher_label(i))
        _hide(self, "_kinds", kinds)
        _hide(self, "_why", why)
        _hide(self, "_probed", all(k is not None for k in [kinds["student"], *kinds["teachers"]]))

    def _build_features(self, features):
        if not isinstance(features, (list, tuple)):
            raise InputError(f"features must be a list of (teacher_layer, student_layer) pairs. Got: {features!r}")
        pairs = []  # (teacher index, teacher layer, student layer)
        for j, pair in enumerate(features):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise InputError(f"features[{j}] must be a (teacher_layer, student_layer) pair. Got: {pair!r}")
            t_ref, s_ref = pair
            hits = [(i, l) for i, t in enumerate(self._teachers) for l in [_find_layer(t, t_ref)] if l is not None]
            if not hits:
                raise InputError(f"features[{j}]: no layer {getattr(t_ref, 'name', t_ref)!r} in the teacher"
                                 f"{'s' if len(self._teachers) > 1 else ''}")
            if len(hits) > 1:
                raise InputError(f"features[{j}]: layer name {t_ref!r} is in {len(hits)} teachers of the ensemble; "
                                 "pass the layer object instead of its name")
            s_layer = _find_layer(self.student, s_ref)
            if s_layer is None:
                raise InputError(f"features[{j}]: no layer {getattr(s_ref, 'name', s_ref)!r} in the student")
            pairs.append((hits[0][0], hits[0][1], s_layer))
        student_model = _feature_model(self.student, [s for _, _, s in pairs], "student")
        teacher_models, slots = [], []  # slots[j] = (teacher index, position in that teacher's feature list)
        for i, t in enumerate(self._teachers):
            mine = [l for k, l, _ in pairs if k == i]
            teacher_models.append(_feature_model(t, mine, self._teacher_label(i)))
        counters = [0] * len(self._teachers)
        projections = []
        for j, (i, t_layer, s_layer) in enumerate(pairs):
            slots.append((i, counters[i]))
            counters[i] += 1
            t_shape = tuple(_layer_output(self._teachers[i], t_layer, "teacher").shape[1:])
            s_shape = tuple(_layer_output(self.student, s_layer, "student").shape[1:])
            if t_shape == s_shape:
                projections.append(None)
            elif t_shape[:-1] == s_shape[:-1] and t_shape[-1] is not None:
                proj = keras.layers.Dense(t_shape[-1], name=f"hint_projection_{j}")
                proj.build((None, *s_shape))
                projections.append(proj)
            else:
                raise InputError(f"features[{j}]: teacher layer {t_layer.name!r} outputs {t_shape} and student layer "
                                 f"{s_layer.name!r} outputs {s_shape}; a 1x1 projection maps channels only, so all "
                                 "other dimensions must agree")
        _hide(self, "_student_features", student_model)
        _hide(self, "_teacher_features", teacher_models)
        _hide(self, "_slots", slots)
        _hide(self, "_pairs", [(t.name, s.name) for _, t, s in pairs])
        # tracked: the projections train with the student
        self.projections = [p for p in projections if p is not None]
        _hide(self, "_projection_of", projections)

    @property
    def output_kinds(self):
        """What each output was taken to be, and why: `{"student": (kind, why), "teachers": [(kind, why), ...]}`.

        A kind is `"logits"` or `"probabilities"`; it is None while undecided (no softmax at the output
        and no batch seen yet by `fit`, `evaluate`, `train_on_batch` or `test_on_batch`). An output
        never probed is treated as logits.
        """
        return {"student": (self._kinds["student"], self._why["student"]),
                "teachers": list(zip(self._kinds["teachers"], self._why["teachers"]))}

    # -- probing on the first batch ----------------------------------------------------------

    def _prepare(self, x, y, sample_weight=None):
        """Checks for labels and probes undecided output kinds on the first batch, before tracing."""
        probe, has_labels = _probe_batch(x, y)
        if self.alpha < 1.0 and has_labels is False:
            raise InputError(_NO_LABELS.format(alpha=self.alpha))
        if self._probed or probe is None:
            return
        outs = {"student": self.student(probe, training=False)}
        for i, t in enumerate(self._teachers):
            outs[i] = t(probe, training=False)
        if self._kinds["student"] is None:
            self._kinds["student"], self._why["student"] = _probe_kind(outs["student"])
        for i in range(len(self._teachers)):
            if self._kinds["teachers"][i] is None:
                self._kinds["teachers"][i], self._why["teachers"][i] = _probe_kind(outs[i])
        _hide(self, "_probed", True)

    def _kind(self, who):
        kind = self._kinds["student"] if who == "student" else self._kinds["teachers"][who]
        return kind or "logits"  # not probed (e.g. a Python generator): no softmax at the output

    # -- the loss ----------------------------------------------------------------------------

    def _forward(self, x, training):
        if self._student_features is not None:
            s_out, *s_feats = self._student_features(x, training=training)
        else:
            s_out, s_feats = self.student(x, training=training), []
        t_outs, t_feats = [], []
        for i, t in enumerate(self._teachers):
            model = self._teacher_features[i]
            if model is not None:
                out, *feats = model(x, training=False)
            else:
                out, feats = t(x, training=False), []
            t_outs.append(tf.stop_gradient(out))
            t_feats.append([tf.stop_gradient(f) for f in feats])
        return s_out, s_feats, t_outs, t_feats

    def compute_losses(self, x, y=None, sample_weight=None, training=False):
        """The loss terms on one batch: `({"loss", "distillation_loss", ["student_loss"],
        ["feature_loss"]}, student output)`; "loss" excludes regularization losses."""
        s_out, s_feats, t_outs, t_feats = self._forward(x, training)
        T = self.temperature
        s_logits = _to_logits(s_out, self._kind("student"))
        p_t = tf.add_n([tf.nn.softmax(_to_logits(t, self._kind(i)) / T) for i, t in enumerate(t_outs)])
        p_t = p_t / float(len(t_outs))
        log_q = tf.nn.log_softmax(s_logits / T)
        kl = tf.reduce_sum(tf.math.xlogy(p_t, p_t) - p_t * log_q, axis=-1)
        distill = (T * T) * kl
        total = self.alpha * distill
        parts = {"distillation_loss": _reduce(distill, sample_weight)}
        if y is not None:
            ce = _cross_entropy(y, s_logits)
            parts["student_loss"] = _reduce(ce, sample_weight)
            if self.alpha < 1.0:
                total = total + (1.0 - self.alpha) * ce
        elif self.alpha < 1.0:
            raise InputError(_NO_LABELS.format(alpha=self.alpha))
        if self._slots:
            hint = 0.0
            for j, (i, pos) in enumerate(self._slots):
                s_f = tf.cast(s_feats[j], tf.float32)
                proj = self._projection_of[j]
                if proj is not None:
                    s_f = proj(s_f)
                err = tf.square(s_f - tf.cast(t_feats[i][pos], tf.float32))
                hint = hint + tf.reduce_mean(tf.reshape(err, [tf.shape(err)[0], -1]), axis=1)
            parts["feature_loss"] = _reduce(hint, sample_weight)
            total = total + self.feature_weight * hint
        parts["loss"] = _reduce(total, sample_weight)
        return parts, s_out

    # -- Keras hooks ---------------------------------------------------------------------------

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Like `keras.Model.compile`, without `loss`: the Distiller's loss is set by its constructor."""
        if loss is not None:
            raise InputError("Distiller.compile takes no loss: the loss is alpha · T² · KL + (1 - alpha) · CE, "
                             "set by temperature and alpha in the constructor")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    @property
    def metrics(self):
        return list(self._trackers.values()) + super().metrics

    def _logs(self, parts, loss, y, s_out, sample_weight):
        batch = tf.shape(s_out)[0]
        self._trackers["loss"].update_state(loss, sample_weight=batch)
        logs = {"loss": self._trackers["loss"].result()}
        for key, value in parts.items():
            if key != "loss":
                self._trackers[key].update_state(value, sample_weight=batch)
                logs[key] = self._trackers[key].result()
        if y is not None:
            self.compiled_metrics.update_state(y, s_out, sample_weight)
            for m in self.compiled_metrics.metrics:
                result = m.result()
                logs.update(result if isinstance(result, dict) else {m.name: result})
        return logs

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            parts, s_out = self.compute_losses(x, y, sample_weight, training=True)
            loss = parts["loss"]
            if self.losses:
                loss = loss + tf.add_n(self.losses)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self._logs(parts, loss, y, s_out, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        parts, s_out = self.compute_losses(x, y, sample_weight, training=False)
        loss = parts["loss"]
        if self.losses:
            loss = loss + tf.add_n(self.losses)
        return self._logs(parts, loss, y, s_out, sample_weight)

    def fit(self, x=None, y=None, *args, **kwargs):
        self._prepare(x, y)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._prepare(x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        self._prepare(x, y)
        return super().train_on_batch(x, y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        self._prepare(x, y)
        return super().test_on_batch(x, y, *args, **kwargs)

    def save(self, filepath, *args, **kwargs):
        """Saves the student (the teacher and the hint projections are training aids, not the result)."""
        return self.student.save(filepath, *args, **kwargs)

    def save_weights(self, filepath, *args, **kwargs):
        """Saves the student's weights."""
        return self.student.save_weights(filepath, *args, **kwargs)

    def load_weights(self, filepath, *args, **kwargs):
        """Loads weights saved by `save_weights` into the student."""
        return self.student.load_weights(filepath, *args, **kwargs)

    def get_config(self):
        raise NotImplementedError("a Distiller is not serialized itself: save distiller.student "
                                  "(distiller.save does)")


def _cross_entropy(y, logits):
    """Per-sample CE at temperature 1; one-hot (or soft) labels when y has the logits' shape."""
    y = tf.convert_to_tensor(y)
    if (y.dtype.is_floating and y.shape.rank == logits.shape.rank and y.shape[-1] is not None
            and y.shape[-1] == logits.shape[-1] and y.shape[-1] != 1):
        return tf.nn.softmax_cross_entropy_with_logits(labels=tf.cast(y, logits.dtype), logits=logits)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(tf.reshape(y, [-1]), tf.int32),
                                                          logits=logits)


def _probe_batch(x, y):
    """(first few inputs or None, whether labels come with them: True / False / None for unknown)."""
    if isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        has_labels = isinstance(spec, tuple) and len(spec) >= 2
        try:
            element = next(iter(x.take(1)))
        except (StopIteration, tf.errors.OutOfRangeError):
            return None, has_labels
        batch = element[0] if isinstance(element, tuple) else element
        return tf.nest.map_structure(lambda a: a[:PROBE_SAMPLES], batch), has_labels
    if isinstance(x, keras.utils.Sequence):
        try:
            element = x[0]
        except Exception:  # a Sequence that cannot be indexed up front: probe nothing
            return None, None
        has_labels = isinstance(element, tuple) and len(element) >= 2
        batch = element[0] if isinstance(element, tuple) else element
        return tf.nest.map_structure(lambda a: a[:PROBE_SAMPLES], batch), has_labels
    leaves = tf.nest.flatten(x) if x is not None else []
    if leaves and all(isinstance(a, (np.ndarray, tf.Tensor)) or hasattr(a, "__array__") for a in leaves):
        probe = tf.nest.map_structure(lambda a: a[:PROBE_SAMPLES] if isinstance(a, tf.Tensor)
                                      else np.asarray(a)[:PROBE_SAMPLES], x)
        return probe, y is not None
    return None, (True if y is not None else None)
