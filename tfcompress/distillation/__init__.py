"""Knowledge distillation (Hinton et al., 2015) inside `fit`: the `Distiller`.

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

Modules: `distiller` (the `Distiller` model), `detection` (output shapes and logits-or-probabilities),
`losses` (the per-sample terms and their batch reduction), `hints` (feature-hint pairs and projections).
"""
from tfcompress.distillation.detection import KINDS, PROBE_SAMPLES
from tfcompress.distillation.distiller import Distiller

__all__ = ["Distiller", "KINDS", "PROBE_SAMPLES"]
