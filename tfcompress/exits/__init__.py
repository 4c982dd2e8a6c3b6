"""Early exits: classifiers at intermediate layers and a runner that stops at the first confident one.

- `heads.py`: `tfc.add_exits` (an `ExitModel` trained in one `fit`, the exits' losses weighted);
- `policy.py`: `ExitPolicy` (a confidence or entropy threshold per exit; JSON round trip; NumPy only);
- `calibration.py`: `tfc.calibrate_exits` (the cheapest thresholds within an accuracy budget);
- `export.py`: `tfc.export_exits` (one .tflite, one full-int8 signature per stage, ReLU6 pinned);
- `runner.py`: `Runner` (LiteRT only, no TensorFlow: runs on boards).

Importing this package imports neither TensorFlow nor tf_keras: only `Runner` and `ExitPolicy` are bound
here; the Keras side is reached through `tfcompress` (`tfc.add_exits`, ...).
"""
from tfcompress.exits.policy import ExitPolicy
from tfcompress.exits.runner import Runner

__all__ = ["ExitPolicy", "Runner"]
