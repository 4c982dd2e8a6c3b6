"""`Distiller`: a `keras.Model` whose `fit` trains a student on a frozen teacher's softened outputs.

The method, the loss and how logits and probabilities are told apart are described in
`tfcompress.distillation`; the pieces live beside this module (`detection`, `losses`, `hints`).
"""
import numpy as np

from tfcompress._tf import keras, tf
from tfcompress.graph.keras3 import tf_keras_model
from tfcompress.distillation.detection import (KINDS, input_shape, probe_batch, probe_kind,
                                               single_output_shape, structural_kind)
from tfcompress.distillation.hints import build_hints
from tfcompress.distillation.losses import cross_entropy, hint_error, reduce_batch, soft_kl, to_logits
from tfcompress.errors import InputError

_NO_LABELS = ("alpha={alpha} < 1 needs labels for the (1 - alpha) · CE term: pass y (or a dataset of (x, y)), "
              "or use alpha=1.0 to distil on an unlabeled transfer set")


def _resolve_label_loss(loss):
    """None for the default CE, else a `keras.losses.Loss` or a function `(y_true, y_pred)`."""
    if isinstance(loss, (list, tuple)) and len(loss) == 1:
        loss = loss[0]
    if loss is None or isinstance(loss, keras.losses.Loss):
        return loss
    if isinstance(loss, (list, tuple, dict)):
        raise InputError(f"Distiller.compile takes one loss: the student has one output. Got: {loss!r}")
    try:
        fn = keras.losses.get(loss)
    except (ValueError, TypeError):
        fn = None
    if fn is None or not callable(fn):
        raise InputError("Distiller.compile: loss must be a loss name, a keras.losses.Loss or a function "
                         f"(y_true, y_pred). Got: {loss!r}")
    if fn in (keras.losses.sparse_categorical_crossentropy, keras.losses.categorical_crossentropy):
        return None  # the default CE already matches logits or probabilities, and sparse or one-hot labels
    return fn


def _hide(obj, name, value):
    """Sets an attribute that Keras does not track (no weights, no saving, no sub-layer listing)."""
    object.__setattr__(obj, name, value)


class Distiller(keras.Model):
    """Trains a student on a frozen teacher's (or ensemble's) softened outputs, in `fit`.

    `fit` minimises `alpha · T² · KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha) · CE(y, s)` plus the
    hint losses of `features`. With `alpha=1.0` no labels are needed: `fit(x)` distils on an
    unlabeled transfer set. `compile(optimizer, loss=..., metrics=...)` takes the student's label loss
    as `keras.distillation` does: it replaces CE in the `(1 − alpha)` term (see `compile`).
    `distiller.student` is the student, trained in place; `save`, `save_weights` and `load_weights`
    act on the student; `predict` and `evaluate` run the student. Logs: `loss` (the total, with the
    student's regularization losses), `distillation_loss` (T²·KL), `student_loss` (the label loss,
    when labels are given), `feature_loss` (when `features` is set) and the compiled metrics on the student.

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
        may carry pruning, clustering or QAT wrappers. A Keras 3 model is translated first
        (`tfc.from_keras3`): the tf_keras translation is what trains, `tfc.strip(distiller)` returns it,
        and `tfc.to_keras3` takes it back; name hint layers by name then.
      teacher: a tf_keras or Keras 3 model, or a list of them (an ensemble: the softened probabilities
        are averaged). Same input and output shapes as the student.
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
        given = student
        student = tf_keras_model(student, "student")
        teachers = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
        if not teachers:
            raise InputError("teacher must be a model or a non-empty list of models. Got: []")
        for i, t in enumerate(teachers):
            if t is student or t is given:
                raise InputError("the teacher is the student itself; give a separately trained teacher")
            teachers[i] = tf_keras_model(t, "teacher" if len(teachers) == 1 else f"teacher[{i}]")
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
        s_out = single_output_shape(self.student, "student")
        s_in = input_shape(self.student)
        for i, t in enumerate(self._teachers):
            label = self._teacher_label(i)
            t_out = single_output_shape(t, label)
            if t_out != s_out:
                raise InputError(f"{label} {t.name!r} outputs shape {t_out} but student {self.student.name!r} "
                                 f"outputs {s_out}; the KL term needs the same classes in the same order")
            t_in = input_shape(t)
            if s_in is not None and t_in is not None and t_in != s_in:
                raise InputError(f"{label} {t.name!r} takes input shape {t_in} but student "
                                 f"{self.student.name!r} takes {s_in}; both are fed the same batches")

    def _detect_structure(self, teacher_outputs, student_outputs):
        kinds = {"student": None, "teachers": [None] * len(self._teachers)}
        why = {"student": None, "teachers": [None] * len(self._teachers)}
        if student_outputs:
            kinds["student"], why["student"] = student_outputs, "given by student_outputs"
        else:
            kinds["student"], why["student"] = structural_kind(self.student, "student")
        for i, t in enumerate(self._teachers):
            if teacher_outputs:
                kinds["teachers"][i], why["teachers"][i] = teacher_outputs, "given by teacher_outputs"
            else:
                kinds["teachers"][i], why["teachers"][i] = structural_kind(t, self._teacher_label(i))
        _hide(self, "_kinds", kinds)
        _hide(self, "_why", why)
        _hide(self, "_probed", all(k is not None for k in [kinds["student"], *kinds["teachers"]]))

    def _build_features(self, features):
        hints = build_hints(self.student, self._teachers, features, self._teacher_label)
        _hide(self, "_student_features", hints.student_model)
        _hide(self, "_teacher_features", hints.teacher_models)
        _hide(self, "_slots", hints.slots)
        _hide(self, "_pairs", hints.names)
        # tracked: the projections train with the student
        self.projections = [p for p in hints.projections if p is not None]
        _hide(self, "_projection_of", hints.projections)

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
        probe, has_labels = probe_batch(x, y)
        if self.alpha < 1.0 and has_labels is False:
            raise InputError(_NO_LABELS.format(alpha=self.alpha))
        if self._probed or probe is None:
            return
        outs = {"student": self.student(probe, training=False)}
        for i, t in enumerate(self._teachers):
            outs[i] = t(probe, training=False)
        if self._kinds["student"] is None:
            self._kinds["student"], self._why["student"] = probe_kind(outs["student"])
        for i in range(len(self._teachers)):
            if self._kinds["teachers"][i] is None:
                self._kinds["teachers"][i], self._why["teachers"][i] = probe_kind(outs[i])
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
        s_logits = to_logits(s_out, self._kind("student"))
        distill = soft_kl(s_logits, [to_logits(t, self._kind(i)) for i, t in enumerate(t_outs)], self.temperature)
        total = self.alpha * distill
        parts = {"distillation_loss": reduce_batch(distill, sample_weight)}
        if y is not None:
            ce = self._label_loss_values(y, s_out, s_logits)
            parts["student_loss"] = reduce_batch(ce, sample_weight)
            if self.alpha < 1.0:
                total = total + (1.0 - self.alpha) * ce
        elif self.alpha < 1.0:
            raise InputError(_NO_LABELS.format(alpha=self.alpha))
        if self._slots:
            hint = 0.0
            for j, (i, pos) in enumerate(self._slots):
                hint = hint + hint_error(s_feats[j], t_feats[i][pos], self._projection_of[j])
            parts["feature_loss"] = reduce_batch(hint, sample_weight)
            total = total + self.feature_weight * hint
        parts["loss"] = reduce_batch(total, sample_weight)
        return parts, s_out

    # -- Keras hooks ---------------------------------------------------------------------------

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Like `keras.Model.compile`; `loss` is the student's label (hard) loss.

        As in `keras.distillation`, the loss is applied to the labels and the student's output as the
        student gives it (like `student.compile(loss=...)`: a logits student needs
        `from_logits=True` in a loss object), and it replaces CE in the `(1 − alpha)` term; with
        `alpha=1.0` it is only logged (`student_loss`). The names `"sparse_categorical_crossentropy"`
        and `"categorical_crossentropy"` mean the default CE, matched to logits or probabilities. The
        temperature, alpha and hint terms stay the constructor's.

        Args:
          optimizer: as in `keras.Model.compile`. Defaults to `"rmsprop"`.
          loss: a loss name, a `keras.losses.Loss`, or a function `(y_true, y_pred)` giving one value
            per sample (a scalar is spread over the batch). Defaults to `None`: CE at temperature 1,
            sparse or one-hot by the labels' shape, on logits or probabilities as detected.
          metrics: metrics on the student's output. Defaults to `None`.

        Raises:
          InputError: `loss` is not a loss, or is one per output (the student has one output).
        """
        _hide(self, "_label_loss", _resolve_label_loss(loss))
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def _label_loss_values(self, y, s_out, s_logits):
        """Per-sample label loss: the compiled `loss`, else CE on the student's logits."""
        loss = getattr(self, "_label_loss", None)
        if loss is None:
            return cross_entropy(y, s_logits)
        y = tf.convert_to_tensor(y)
        values = loss.call(y, s_out) if isinstance(loss, keras.losses.Loss) else loss(y, s_out)
        values = tf.cast(values, tf.float32)
        if values.shape.rank == 0:
            return tf.fill(tf.shape(s_out)[:1], values)
        if values.shape.rank > 1:
            return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)
        return values

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
