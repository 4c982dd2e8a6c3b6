"""Deep Compression on digits: LeNet-300-100 and LeNet-5, prune -> cluster -> QAT int8 -> coded size.

    nice python benchmarks/deep_compression.py [--models lenet300,lenet5] [--json out/deep_compression.json]
                                               [--out out/deep_compression]

Runs recipes/deep_compression_lenet300.yaml and recipes/deep_compression_lenet5.yaml (every stage is
a recipe step; see them for pruning levels, cluster counts and epochs) and prints, per model, the size
and test accuracy after each stage next to the numbers Han et al. (ICLR 2016) report on MNIST:

  float      the trained model, float32 .tflite
  pruned     after iterative magnitude pruning and fine-tuning, float32 .tflite
  clustered  after clustering with the zeros kept and fine-tuning, float32 .tflite
  int8       after QAT keeping clusters and zeros, integer-only .tflite
  coded      the int8 file's weights in Deep Compression's coding (relative indices + cluster indices,
             both Huffman-coded, + codebooks): what `tfcompress size` reports and `--pack` writes

"weights" is the kernels' size in that file, "coded" their Deep Compression coding, "x" float32 weight
bytes over the coded bytes (the paper's compression rate). Accuracy is on the digits test
split (449 images: one image is 0.22 point), of the .tflite file itself.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
RECIPES = {"lenet300": "recipes/deep_compression_lenet300.yaml", "lenet5": "recipes/deep_compression_lenet5.yaml"}
# Han et al. 2016, Table 1 and 2 (MNIST): float32 weights, compressed size, rate, top-1 error before/after
PAPER = {"lenet300": {"model": "LeNet-300-100", "float_kb": 1070, "coded_kb": 27, "ratio": 40,
                      "error_before": 1.64, "error_after": 1.58},
         "lenet5": {"model": "LeNet-5", "float_kb": 1720, "coded_kb": 44, "ratio": 39,
                    "error_before": 0.80, "error_after": 0.74}}
STAGES = ("float", "pruned", "clustered", "int8")


def run(name, out, echo):
    from tfcompress import recipes
    started = time.time()
    state = recipes.run(os.path.join(ROOT, RECIPES[name]), out=os.path.join(out, name), echo=echo)
    sizes = {d["label"]: d for d in state.sizes}
    missing = [s for s in STAGES if s not in sizes]
    if missing:
        raise SystemExit(f"{RECIPES[name]} has no size step labelled {', '.join(missing)}")
    rows = []
    for stage in STAGES:
        d = sizes[stage]
        rows.append({"stage": stage, "accuracy": d["accuracy"], "file_bytes": d["file_bytes"],
                     "gzip_bytes": d["gzip_bytes"], "weight_bytes": d["weight_bytes"],
                     "coded_bytes": d["coded_bytes"], "float32_bytes": d["float32_bytes"], "zeros": _zeros(d),
                     "ratio": d["ratio"]})
    last = sizes["int8"]
    rows.append({"stage": "coded", "accuracy": last["accuracy"], "file_bytes": last["pack_bytes"],
                 "gzip_bytes": None, "weight_bytes": last["weight_bytes"], "coded_bytes": last["coded_bytes"],
                 "float32_bytes": last["float32_bytes"],
                 "zeros": _zeros(last), "ratio": last["ratio"],
                 "index_bytes": last["index_bytes"], "value_bytes": last["value_bytes"],
                 "codebook_bytes": last["codebook_bytes"]})
    clusters = state.get("clusters", {})
    return {"model": name, "recipe": RECIPES[name], "rows": rows, "paper": PAPER[name],
            "float_accuracy": rows[0]["accuracy"], "final_accuracy": rows[-1]["accuracy"],
            "accuracy_drop_points": 100 * (rows[0]["accuracy"] - rows[-1]["accuracy"]),
            "ratio": last["ratio"], "clusters": clusters, "sparsity": state.get("sparsity"),
            "tensors": last["tensors"], "seconds": round(time.time() - started, 1)}


def _zeros(d):
    n = sum(t["elements"] for t in d["tensors"])
    return 1 - sum(t["nonzero"] for t in d["tensors"]) / n if n else 0.0


def format_result(r):
    p = r["paper"]
    lines = [f"{p['model']} on digits (28x28), {r['recipe']}",
             f"  {'stage':<10} {'test acc':>8} {'error':>7} {'file':>10} {'gzip -9':>9} {'weights':>10} "
             f"{'coded':>10} {'zeros':>6} {'x':>6}"]
    for row in r["rows"]:
        gz = "" if row["gzip_bytes"] is None else f"{row['gzip_bytes']:,}"
        weights = "" if row["stage"] == "coded" else f"{row['weight_bytes']:,}"
        lines.append(f"  {row['stage']:<10} {100 * row['accuracy']:7.2f}% {100 * (1 - row['accuracy']):6.2f}% "
                     f"{row['file_bytes']:>10,} {gz:>9} {weights:>10} {row['coded_bytes']:>10,} "
                     f"{100 * row['zeros']:5.1f}% {row['ratio']:5.1f}x")
    c = r["rows"][-1]
    lines.append("  weights: the kernels as stored in the file; coded: their Deep Compression coding; x: float32 "
                 "weight bytes / coded")
    lines.append(f"  coded int8 = relative indices {c['index_bytes']:,} + cluster indices {c['value_bytes']:,} + "
                 f"codebooks and tables {c['codebook_bytes']:,} bytes; file of 'coded': the whole lossless .tfcz")
    lines.append(f"  ours : {r['rows'][0]['float32_bytes'] / 1000:.0f} KB -> {c['coded_bytes'] / 1000:.1f} KB, "
                 f"{r['ratio']:.1f}x, error {100 * (1 - r['float_accuracy']):.2f} % -> "
                 f"{100 * (1 - r['final_accuracy']):.2f} % ({-r['accuracy_drop_points']:+.2f} points of accuracy)")
    lines.append(f"  paper: {p['float_kb']} KB -> {p['coded_kb']} KB, {p['ratio']}x, error {p['error_before']:.2f} % "
                 f"-> {p['error_after']:.2f} % (MNIST, 60,000 training images)")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="lenet300,lenet5")
    parser.add_argument("--out", default="out/deep_compression")
    parser.add_argument("--json", default=None, metavar="PATH")
    parser.add_argument("--quiet", action="store_true", help="print only the tables")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    echo = (lambda *a, **k: None) if args.quiet else print
    results = []
    for name in names:
        results.append(run(name, args.out, echo))
        print("\n" + format_result(results[-1]), flush=True)
    if args.json:
        from tfcompress.fileio import write_text
        write_text(args.json, json.dumps({"results": results}, indent=2, default=float))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
