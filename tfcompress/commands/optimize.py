"""`tfcompress optimize MODEL --data SPEC (--target_ms X | --speedup S) [--device ...] -o OUT.tflite`:
NetAdapt on the device's latency table, QAT, full-int8 export with ReLU6 pinned, and a benchmark against
the unpruned model's int8 file; a table of every kept candidate and a PNG of accuracy against latency.

    tfcompress optimize model.keras --data digits --speedup 2 -o small.tflite --plot small.png
"""
import json
import os

from tfcompress.commands import json_flag


def add_parser(p):
    p.add_argument("model", help="a trained classifier: .keras, .h5 or a SavedModel folder")
    p.add_argument("--data", default="digits", help="data spec: digits (default), npz:PATH, dir:PATH, keras:NAME")
    how = p.add_argument_group("how fast (exactly one)")
    how.add_argument("--target_ms", type=float, default=None, help="latency to reach on every device, ms")
    how.add_argument("--speedup", type=float, default=None,
                     help="reach the unpruned model's measured latency divided by this, e.g. 2")
    p.add_argument("-o", "--output", required=True, help="the int8 .tflite file to write")
    p.add_argument("--device", action="append", default=None,
                   help="local (default), adb, adb:SERIAL, ssh:[USER@]HOST; repeat or separate with commas "
                        "for several devices (measured in parallel; the target must hold on all)")
    p.add_argument("--binary", help="benchmark_model binary for the Android device's ABI (adb devices)")
    p.add_argument("--step", type=float, default=0.025, help="first iteration's latency cut (default 0.025)")
    p.add_argument("--decay", type=float, default=0.96, help="each iteration's cut shrinks by this (default 0.96)")
    p.add_argument("--finetune_steps", type=int, default=100, help="short fine-tune per candidate (default 100)")
    p.add_argument("--final_epochs", type=int, default=10, help="fine-tune after the loop (default 10)")
    p.add_argument("--qat_epochs", type=int, default=3, help="quantization-aware training epochs (default 3)")
    p.add_argument("--round_to", type=int, default=8, help="kept channels per group: multiples of this (default 8)")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate of the fine-tunes (default 3e-4)")
    p.add_argument("--max_iterations", type=int, default=100, help="stop after this many iterations (default 100)")
    p.add_argument("--history", metavar="PATH.json",
                   help="NetAdapt's history, written after every iteration; an existing one is resumed")
    p.add_argument("--cache", metavar="FOLDER", help="latency tables (default ~/.cache/tfcompress/latency)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds per whole-file measurement (default 5)")
    p.add_argument("--plot", metavar="OUT.png", help="accuracy against measured latency of every kept candidate")
    json_flag.add(p, "the report")


def _check(args):
    from tfcompress.errors import InputError
    from tfcompress.fileio import check_output
    if (args.target_ms is None) == (args.speedup is None):
        raise InputError("give exactly one of --target_ms and --speedup")
    if not args.output.endswith(".tflite"):
        raise InputError(f"-o names the int8 .tflite file to write. Got: {args.output}")
    if not os.path.exists(args.model):
        raise InputError(f"model not found: {args.model}")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise InputError(f"--plot writes a PNG file; name it .png. Got: {args.plot}")
    if args.rounds < 1 or args.max_iterations < 1:
        raise InputError(f"--rounds and --max_iterations must be >= 1. Got: {args.rounds}, {args.max_iterations}")
    outs = [p for p in (args.output, args.plot, json_flag.path(args), args.history) if p]
    if len({os.path.abspath(p) for p in outs}) != len(outs):
        raise InputError("-o, --plot, --json and --history must name different files")
    for path in outs:
        check_output(path, inputs=[args.model])


def main(args):
    _check(args)
    from tfcompress.latency.pipeline import optimize
    from tfcompress.saving import load_model
    devices = [s.strip() for d in (args.device or ["local"]) for s in d.split(",") if s.strip()]
    model = load_model(args.model)
    say = json_flag.people(args)
    _, report = optimize(model, args.data, args.output, target_ms=args.target_ms, speedup=args.speedup,
                         device=devices, binary=args.binary, cache=args.cache, rounds=args.rounds,
                         history=args.history, step=args.step, decay=args.decay, finetune_steps=args.finetune_steps,
                         final_epochs=args.final_epochs, round_to=args.round_to, lr=args.lr,
                         max_iterations=args.max_iterations, qat_epochs=args.qat_epochs,
                         verbose=0 if args.json == json_flag.STDOUT else 1)  # stdout then holds JSON only
    print(report.format(), file=say)
    if args.plot:
        report.plot(args.plot)
        print(f"wrote {args.plot}", file=say)
    json_flag.emit(args, json.dumps(report.to_dict(), indent=1, default=float), inputs=[args.model])
    return 0
