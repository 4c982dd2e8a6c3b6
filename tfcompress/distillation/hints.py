"""Feature hints: matching teacher and student layers, and the models that return their feature maps.

A hint pair names a teacher layer and a student layer (objects or names; a wrapped layer may be named
by its inner layer's name). Feature maps must agree in every dimension but the last; when the last
differs, a learned 1×1 projection (a Dense on the last axis, trained with the student, not part of it)
maps the student's to the teacher's. With an ensemble, a name must exist in exactly one teacher.
"""
import dataclasses

from tfcompress._tf import keras
from tfcompress.errors import InputError


@dataclasses.dataclass
class Hints:
    """What `build_hints` found; the feature models are None when a model has no hint layer."""
    student_model: object          # keras.Model returning [output, *student feature maps], or None
    teacher_models: list           # per teacher: keras.Model returning [output, *its feature maps], or None
    slots: list                    # per pair: (teacher index, position in that teacher's feature list)
    names: list                    # per pair: (teacher layer name, student layer name)
    projections: list              # per pair: the Dense projection, or None when the shapes agree


def find_layer(model, ref):
    """The top-level layer of `model` that is `ref`, wraps `ref`, or is (or wraps) a layer named `ref`."""
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        if isinstance(ref, str):
            if layer.name == ref or (isinstance(inner, keras.layers.Layer) and inner.name == ref):
                return layer
        elif layer is ref or inner is ref:
            return layer
    return None


def layer_output(model, layer, what):
    try:
        return layer.output
    except AttributeError:
        raise InputError(f"{what} layer {layer.name!r} is called more than once in {model.name!r}; "
                         "name a layer with a single output") from None


def feature_model(model, layers, what):
    """A model sharing `model`'s layers that returns [output, *feature maps]; None without layers."""
    if not layers:
        return None
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise InputError(f"features need a Sequential or functional {what}. Got: {type(model).__name__}")
    outs = [layer_output(model, l, what) for l in layers]
    return keras.Model(model.inputs, [model.outputs[0], *outs], name=f"{model.name}_features")


def _pairs(student, teachers, features):
    """[(teacher index, teacher layer, student layer), ...], each checked to exist once."""
    if not isinstance(features, (list, tuple)):
        raise InputError(f"features must be a list of (teacher_layer, student_layer) pairs. Got: {features!r}")
    pairs = []
    for j, pair in enumerate(features):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise InputError(f"features[{j}] must be a (teacher_layer, student_layer) pair. Got: {pair!r}")
        t_ref, s_ref = pair
        hits = [(i, l) for i, t in enumerate(teachers) for l in [find_layer(t, t_ref)] if l is not None]
        if not hits:
            raise InputError(f"features[{j}]: no layer {getattr(t_ref, 'name', t_ref)!r} in the teacher"
                             f"{'s' if len(teachers) > 1 else ''}")
        if len(hits) > 1:
            raise InputError(f"features[{j}]: layer name {t_ref!r} is in {len(hits)} teachers of the ensemble; "
                             "pass the layer object instead of its name")
        s_layer = find_layer(student, s_ref)
        if s_layer is None:
            raise InputError(f"features[{j}]: no layer {getattr(s_ref, 'name', s_ref)!r} in the student")
        pairs.append((hits[0][0], hits[0][1], s_layer))
    return pairs


def build_hints(student, teachers, features, teacher_label):
    """Checks `features` against the models and builds their feature models and projections.

    Args:
      student: the student model.
      teachers: the list of teacher models.
      features: `[(teacher_layer, student_layer), ...]`.
      teacher_label: `i -> str`, what to call teacher `i` in error messages.

    Returns:
      A `Hints`.

    Raises:
      InputError: a pair that is malformed, names no layer (or a name in several teachers), a layer
        called more than once, a subclassed model, or feature maps that differ beyond the last axis.
    """
    pairs = _pairs(student, teachers, features)
    student_model = feature_model(student, [s for _, _, s in pairs], "student")
    teacher_models = [feature_model(t, [l for k, l, _ in pairs if k == i], teacher_label(i))
                      for i, t in enumerate(teachers)]
    counters = [0] * len(teachers)
    slots, projections = [], []
    for j, (i, t_layer, s_layer) in enumerate(pairs):
        slots.append((i, counters[i]))
        counters[i] += 1
        t_shape = tuple(layer_output(teachers[i], t_layer, "teacher").shape[1:])
        s_shape = tuple(layer_output(student, s_layer, "student").shape[1:])
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
    return Hints(student_model, teacher_models, slots, [(t.name, s.name) for _, t, s in pairs], projections)
