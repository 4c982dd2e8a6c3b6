"""`tfcompress.exits.Runner`: run an early-exit .tflite file stage by stage and stop at the first
confident exit. LiteRT (`ai_edge_litert`, else `tflite_runtime`) and NumPy only: this module never imports
TensorFlow, so it runs on boards that have only a LiteRT runtime.

The file holds one signature per stage (`stage_0`, `stage_1`, ...; see `tfc.export_exits`). For each
sample the runner sets stage 0's input, invokes it, scores its `logits` with the policy, and either
stops or hands the stage's `features` (int8, already in the next stage's input quantization) to the
next stage.
"""
import importlib

import numpy as np

from tfcompress.errors import InputError
from tfcompress.exits.policy import ExitPolicy, scores
from tfcompress.tflite.runtime import dequantize, quantize

_RUNTIMES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


def interpreter_module():
    """The LiteRT interpreter module: ai_edge_litert first, then tflite_runtime (never TensorFlow).

    Raises:
      InputError: neither is installed.
    """
    for name in _RUNTIMES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise InputError("no LiteRT runtime installed; pip install ai-edge-litert (or tflite-runtime)")


def load_interpreter(path_or_bytes, num_threads=1, use_xnnpack=True):
    """A LiteRT `Interpreter` over a path or the file's bytes, tensors allocated."""
    mod = interpreter_module()
    kwargs = {"num_threads": int(num_threads)}
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        kwargs["model_content"] = bytes(path_or_bytes)
    else:
        kwargs["model_path"] = str(path_or_bytes)
    if not use_xnnpack and hasattr(mod, "OpResolverType"):
        kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        it = mod.Interpreter(**kwargs)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise InputError(f"cannot load {kwargs.get('model_path', 'the model')}: {str(e).splitlines()[0]}") from None
    return it


class _Stage:
    """One signature, invoked through the interpreter's own tensor calls (no per-call resize/allocate)."""

    def __init__(self, it, key):
        self.key = key
        sig = it.get_signature_runner(key)
        sig(**{n: np.zeros(d["shape"], d["dtype"]) for n, d in sig.get_input_details().items()})  # allocates
        self.input = sig.get_input_details()["x"]
        outs = sig.get_output_details()
        self.logits = outs["logits"]
        self.features = outs.get("features")
        self._sig = sig
        self._wrapper = getattr(it, "_interpreter", None)
        self._graph = getattr(sig, "_subgraph_index", None)
        self._fast = self._wrapper is not None and self._graph is not None and all(
            hasattr(self._wrapper, m) for m in ("SetTensor", "Invoke", "GetTensor"))

    def __call__(self, x):
        """Runs on `x` (already of the input's type); returns (logits as stored, features as stored)."""
        if self._fast:
            w, g = self._wrapper, self._graph
            w.SetTensor(self.input["index"], x, g)
            w.Invoke(g)
            logits = w.GetTensor(self.logits["index"], g)
            return logits, (w.GetTensor(self.features["index"], g) if self.features else None)
        out = self._sig(x=x)
        return out["logits"], out.get("features")


class Runner:
    """Runs an early-exit file sample by sample, stopping at the first exit the policy accepts.

    Example:

    ```python
    runner = Runner("exits.tflite", ExitPolicy.load("policy.json"))
    labels, exits = runner.predict(x_test)          # the exit each sample left at: 0..n (n = final)
    ```

    Args:
      path: the `.tflite` file (or its bytes) from `tfc.export_exits`.
      policy: an `ExitPolicy` (or its dict) with one threshold per early exit. Defaults to `None`: never
        exit early (every stage runs).
      num_threads: interpreter threads. Defaults to `1`.
      use_xnnpack: apply LiteRT's default XNNPACK delegate. Defaults to `True`.

    Raises:
      InputError: no LiteRT runtime, a file without `stage_<i>` signatures, or a policy whose number of
        thresholds differs from the file's exits.
    """

    def __init__(self, path, policy=None, num_threads=1, use_xnnpack=True):
        self.interpreter = load_interpreter(path, num_threads, use_xnnpack)
        keys = [k for k in self.interpreter.get_signature_list() if k.startswith("stage_")]
        try:
            keys = sorted(keys, key=lambda k: int(k.split("_", 1)[1]))
        except ValueError:
            keys = []
        if len(keys) < 2 or keys != [f"stage_{i}" for i in range(len(keys))]:
            raise InputError(f"{path if isinstance(path, str) else 'the model'} has no early-exit stages "
                             f"(signatures stage_0, stage_1, ...). Got: {sorted(self.interpreter.get_signature_list())}")
        self.stages = [_Stage(self.interpreter, k) for k in keys]
        if isinstance(policy, dict):
            policy = ExitPolicy.from_dict(policy)
        self.policy = policy or ExitPolicy(thresholds=[None] * (len(keys) - 1))
        if len(self.policy.thresholds) != len(keys) - 1:
            raise InputError(f"the policy has {len(self.policy.thresholds)} thresholds; the file has "
                             f"{len(keys) - 1} exits")
        self._handoff = [self._handoff_fn(a, b) for a, b in zip(self.stages, self.stages[1:])]

    @staticmethod
    def _handoff_fn(stage, nxt):
        src, dst = stage.features, nxt.input
        same = (np.dtype(src["dtype"]) == np.dtype(dst["dtype"])
                and tuple(src["quantization"]) == tuple(dst["quantization"]))
        return None if same else (lambda f: quantize(dequantize(f, src), dst))

    @property
    def exits(self):
        """The number of early exits (stages - 1)."""
        return len(self.stages) - 1

    def run_sample(self, x):
        """One sample (float, without or with a batch axis of 1) -> (float32 logits, exit index)."""
        x = np.asarray(x, np.float32)
        if x.ndim == len(self.stages[0].input["shape"]) - 1:
            x = x[None]
        value = quantize(x, self.stages[0].input)
        policy, last = self.policy, len(self.stages) - 1
        for i, stage in enumerate(self.stages):
            logits, features = stage(value)
            logits = dequantize(logits, stage.logits)
            if i == last or policy.exits_at(i, logits)[0]:
                return logits[0], i
            value = features if self._handoff[i] is None else self._handoff[i](features)

    def predict(self, x):
        """Labels and exit indices for every sample of `x` (first axis), each run on its own.

        Returns:
          `(labels, exits)`: two int arrays of shape (samples,); exit `self.exits` is the final output.
        """
        labels, exits = [], []
        for sample in np.asarray(x, np.float32):
            logits, i = self.run_sample(sample)
            labels.append(int(np.argmax(logits)))
            exits.append(i)
        return np.asarray(labels, np.int64), np.asarray(exits, np.int64)

    def all_logits(self, x):
        """Every exit's float32 logits for every sample (all stages run): a list of (samples, classes)."""
        per_exit = [[] for _ in self.stages]
        for sample in np.asarray(x, np.float32):
            value = quantize(sample[None], self.stages[0].input)
            for i, stage in enumerate(self.stages):
                logits, features = stage(value)
                per_exit[i].append(dequantize(logits, stage.logits)[0])
                if features is not None:
                    value = features if self._handoff[i] is None else self._handoff[i](features)
        return [np.stack(p) for p in per_exit]

    def scores(self, x):
        """Every early exit's policy scores for every sample: a list of (samples,) arrays."""
        return [scores(l, self.policy.criterion) for l in self.all_logits(x)[:-1]]

    def stage_handoff_requantizes(self):
        """For each boundary, True when the features need requantizing between stages (False: int8 as is)."""
        return [h is not None for h in self._handoff]
