"""The Distiller's loss terms, per sample, and Keras' reduction of them over a batch.

Probabilities are turned into logits by `log(max(p, 1e-30))`, which gives the same softened
distribution as the original logits (softmax is invariant to the per-row shift `log Σ exp`).
"""
from tfcompress._tf import tf

LOG_FLOOR = 1e-30


def to_logits(values, kind):
    """`values` as float32 logits; `kind` is "logits" or "probabilities"."""
    values = tf.cast(values, tf.float32)
    return tf.math.log(tf.maximum(values, LOG_FLOOR)) if kind == "probabilities" else values


def soft_kl(student_logits, teacher_logits, temperature):
    """Per-sample `T² · KL(p_t ‖ softmax(s / T))`, `p_t` the mean of the teachers' `softmax(t / T)`."""
    T = temperature
    p_t = tf.add_n([tf.nn.softmax(t / T) for t in teacher_logits]) / float(len(teacher_logits))
    log_q = tf.nn.log_softmax(student_logits / T)
    kl = tf.reduce_sum(tf.math.xlogy(p_t, p_t) - p_t * log_q, axis=-1)
    return (T * T) * kl


def cross_entropy(y, logits):
    """Per-sample CE at temperature 1; one-hot (or soft) labels when y has the logits' shape."""
    y = tf.convert_to_tensor(y)
    if (y.dtype.is_floating and y.shape.rank == logits.shape.rank and y.shape[-1] is not None
            and y.shape[-1] == logits.shape[-1] and y.shape[-1] != 1):
        return tf.nn.softmax_cross_entropy_with_logits(labels=tf.cast(y, logits.dtype), logits=logits)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(tf.reshape(y, [-1]), tf.int32),
                                                          logits=logits)


def hint_error(student_feature, teacher_feature, projection=None):
    """Per-sample mean squared difference of two feature maps (the student's through `projection`)."""
    s_f = tf.cast(student_feature, tf.float32)
    if projection is not None:
        s_f = projection(s_f)
    err = tf.square(s_f - tf.cast(teacher_feature, tf.float32))
    return tf.reduce_mean(tf.reshape(err, [tf.shape(err)[0], -1]), axis=1)


def reduce_batch(per_sample, sample_weight):
    """Keras' SUM_OVER_BATCH_SIZE: Σ w·l / batch size (the plain mean without weights)."""
    if sample_weight is None:
        return tf.reduce_mean(per_sample)
    w = tf.reshape(tf.cast(sample_weight, per_sample.dtype), [-1])
    return tf.reduce_sum(per_sample * w) / tf.cast(tf.size(per_sample), per_sample.dtype)
