"""`tfcompress bench --stages`: each stage of an early-exit file timed on the device, and the expected
latency per sample under an exit policy on a data set.

    tfcompress bench exits.tflite --stages --policy policy.json --data digits --device adb --binary ...

Every `stage_<i>` signature is one benchmark configuration (benchmark_model's and the edge runner's
`--signature_to_run_for`). With `--policy`, the policy runs on the data (LiteRT, on this machine) to find
which fraction of samples reaches each stage; the expected latency on each device is the sum over the
stages of that fraction times the stage's measured mean. No TensorFlow is imported unless the data must be
resized to the model's input.
"""
import dataclasses
import json
import os

import numpy as np

from tfcompress.errors import InputError


def add_arguments(parser):
    """The flags `tfcompress bench` gains for early-exit files."""
    parser.add_argument("--stages", action="store_true",
                        help="early-exit files (tfc.export_exits): time every stage_<i> signature")
    parser.add_argument("--policy", metavar="POLICY.json",
                        help="with --stages: report the expected latency per sample under this exit policy")
    parser.add_argument("--data", default="digits",
                        help="with --policy: data spec the policy runs on, test split (default digits)")


def stage_keys(path):
    """The `stage_<i>` signature names of an early-exit file, in order."""
    from tfcompress.exits.runner import load_interpreter
    keys = [k for k in load_interpreter(path).get_signature_list() if k.startswith("stage_")]
    if len(keys) < 2:
        raise InputError(f"{path} has no early-exit stages (signatures stage_0, stage_1, ...); export it with "
                         "tfc.export_exits or drop --stages")
    return sorted(keys, key=lambda k: int(k.split("_", 1)[1]))


def reach_fractions(path, policy, spec):
    """Fraction of the data's samples that run each stage under `policy` (1.0 for stage 0)."""
    from tfcompress import data
    from tfcompress.exits import ExitPolicy, Runner
    runner = Runner(path, ExitPolicy.load(policy))
    x, _ = data.load(spec, "test")
    shape = tuple(int(d) for d in runner.stages[0].input["shape"])
    x, _ = data.fit_to_input(np.asarray(x, np.float32), (None,) + shape[1:])
    _, exits = runner.predict(x)
    return [float((exits >= k).mean()) for k in range(len(runner.stages))], len(x)


def expected(results, keys, reach):
    """One row per (device, threads, delegate): stage means, expected and all-stages latency in ms."""
    rows = {}
    for r in results:
        model, _, key = r.model.rpartition("@")
        row = rows.setdefault((model, r.device, r.threads, r.delegate), {})
        row[key] = r.avg_ms if r.ok else None
    out = []
    for (model, device, threads, delegate), stage_ms in rows.items():
        ms = [stage_ms.get(k) for k in keys]
        ok = all(m is not None for m in ms)
        out.append({"model": model, "device": device, "threads": threads, "delegate": delegate, "stage_ms": ms,
                    "all_stages_ms": sum(ms) if ok else None, "reach": reach,
                    "expected_ms": sum(f * m for f, m in zip(reach, ms)) if ok and reach else None})
    return out


def main(args, runners, configs):
    """Runs every stage of every model on every runner; prints the tables; returns the exit code."""
    from android_bench import report
    from android_bench.runners import run_matrix
    from tfcompress.commands import json_flag
    if args.policy and not os.path.isfile(args.policy):
        raise InputError(f"policy file not found: {args.policy}")
    say = json_flag.people(args)
    results, summary = [], []
    for model in args.models:
        keys = stage_keys(model)
        reach = reach_fractions(model, args.policy, args.data)[0] if args.policy else None
        stage_configs = [dataclasses.replace(c, signature=k) for c in configs for k in keys]
        progress = report.Progress(len(runners) * len(stage_configs))
        done = run_matrix(runners, [model], stage_configs, cooldown=args.cooldown, progress=progress)
        for r, c in zip(done, [c for _ in runners for c in stage_configs]):
            r.model = f"{model}@{c.signature}"
        results += done
        summary += expected(done, keys, reach)
    print(report.format_table(results, compare=False), file=say)
    for row in summary:
        stages = ", ".join(f"{m:.3f}" if m is not None else "-" for m in row["stage_ms"])
        line = (f"{row['model']} {row['device']} thr={row['threads']} {row['delegate']}: stages [{stages}] ms, "
                f"all stages {_ms(row['all_stages_ms'])}")
        if row["reach"] is not None:
            line += (f", expected under {args.policy} on {args.data} {_ms(row['expected_ms'])} (reaching each stage: "
                     f"{', '.join(f'{f:.3f}' for f in row['reach'])})")
        print(line, file=say)
    text = json.dumps({"results": [r.to_dict() for r in results], "stages": summary}, indent=2) + "\n"
    json_flag.emit(args, text.rstrip("\n"), inputs=args.models)
    return 1 if any(not r.ok for r in results) else 0


def _ms(value):
    return "-" if value is None else f"{value:.3f} ms"
