"""Keras 3 models through tfcompress: translation accuracy both ways on keras.applications models, and a
Keras 3 MobileNetV2 through prune -> fit -> strip -> to_keras3 and `tfcompress export k3.keras`.

    python benchmarks/keras3_zoo.py [--size 96] [--json out/keras3_zoo.json]

Per model (Keras 3, `weights=None`, 10 classes): max |from_keras3(m)(x) - m(x)| and
max |to_keras3(from_keras3(m))(x) - m(x)| on 8 random inputs, whether the round trip has equal weights,
and the translation time. Then MobileNetV2 (alpha 0.35) is pruned to 50 % inside one `fit` on digits
(resized to the input), stripped, translated back and checked for every zero; the Keras 3 file of it goes
through the `tfcompress export` command, and the int8 file is checked: integer-only, every ReLU6 pinned.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfcompress as tfc  # noqa: E402
from tfcompress import data  # noqa: E402
from tfcompress.graph.keras3 import from_keras3, to_keras3  # noqa: E402
from tfcompress.tflite import reader  # noqa: E402


def zoo(size):
    L = keras.layers
    keras.utils.set_random_seed(0)
    seq = keras.Sequential([keras.Input((size, size, 3)), L.Conv2D(16, 3, activation="relu"), L.MaxPooling2D(),
                            L.BatchNormalization(), L.Conv2D(32, 3, activation="relu"), L.GlobalAveragePooling2D(),
                            L.Dense(10, activation="softmax")], name="sequential_cnn")
    x = keras.Input((size, size, 3))
    a = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    b = L.Conv2D(16, 3, padding="same")(a)
    h = L.Concatenate()([L.Add()([a, b]), a])
    fun = keras.Model(x, L.Dense(10)(L.GlobalAveragePooling2D()(h)), name="residual_concat")
    return [lambda: seq, lambda: fun,
            lambda: keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, weights=None, classes=10),
            lambda: keras.applications.ResNet50(input_shape=(size, size, 3), weights=None, classes=10)]


def round_trip(model, size):
    x = np.random.default_rng(0).normal(size=(8, size, size, 3)).astype(np.float32)
    ref = np.asarray(model(x))
    started = time.perf_counter()
    tk = from_keras3(model)
    t_in = time.perf_counter() - started
    started = time.perf_counter()
    back = to_keras3(tk)
    t_out = time.perf_counter() - started
    same = len(back.get_weights()) == len(model.get_weights()) and all(
        np.array_equal(u, v) for u, v in zip(back.get_weights(), model.get_weights()))
    return {"model": model.name, "params": int(model.count_params()),
            "from_keras3_max_diff": float(np.abs(tk(x).numpy() - ref).max()),
            "round_trip_max_diff": float(np.abs(np.asarray(back(x)) - ref).max()), "equal_weights": bool(same),
            "from_keras3_s": round(t_in, 2), "to_keras3_s": round(t_out, 2)}


def zeros(model):
    return sum(int((w == 0).sum()) for w in model.get_weights() if w.ndim > 1)


def prune_and_export(size, tmp):
    x, y = data.load("digits", "train")
    x, _ = data.fit_to_input(x, (None, size, size, 3))
    k3 = keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=0.35, weights=None, classes=10)
    pruned = tfc.prune(k3, tfc.PolynomialDecay(0.5, end_step=40, frequency=5))
    pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    pruned.fit(x[:640], y[:640], epochs=1, batch_size=16, callbacks=[tfc.CompressionCallback()], verbose=1)
    plain = tfc.strip(pruned)
    back = to_keras3(plain)
    path = os.path.join(tmp, "k3_pruned.keras")
    back.save(path)
    out = os.path.join(tmp, "m.tflite")
    cmd = [sys.executable, "-m", "tfcompress.cli", "export", path, "-o", out, "--data", "digits"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    facts = {"sparsity_target": 0.5, "zeros_stripped": zeros(plain), "zeros_keras3": zeros(back),
             "zeros_equal": zeros(plain) == zeros(back), "export_rc": proc.returncode,
             "export_report": proc.stdout.strip().splitlines(), "export_stderr": proc.stderr.strip().splitlines()[-3:]}
    if proc.returncode == 0:
        facts["float_ops_in_file"] = [str(o) for o in reader.float_ops(reader.read(out))]
    return facts


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--json")
    args = p.parse_args()
    rows = []
    builders = zoo(args.size)
    for i, build in enumerate(builders, 1):
        print(f"[{i}/{len(builders) + 1}] round trip", flush=True)
        rows.append(round_trip(build(), args.size))
    print(f"\n{'model':<24}{'params':>11}{'from_keras3':>13}{'round trip':>12}{'weights':>9}{'in s':>7}{'out s':>7}")
    for r in rows:
        print(f"{r['model']:<24}{r['params']:>11,}{r['from_keras3_max_diff']:>13.2e}{r['round_trip_max_diff']:>12.2e}"
              f"{'equal' if r['equal_weights'] else 'DIFFER':>9}{r['from_keras3_s']:>7.1f}{r['to_keras3_s']:>7.1f}")
    print(f"[{len(builders) + 1}/{len(builders) + 1}] MobileNetV2: prune -> fit -> strip -> to_keras3 -> export", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        facts = prune_and_export(args.size, tmp)
    print(json.dumps(facts, indent=2))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%d %H:%M"), "size": args.size, "round_trips": rows,
                       "prune_export": facts}, f, indent=2)


if __name__ == "__main__":
    main()
