"""`tfcompress scan MODEL --data SPEC [--granularity channel] [--plot scan.png] [--json out.json]`: per-layer
(or per channel group) pruning sensitivity: a table, a PNG of the curves, the report as JSON.

With `--json PATH` the report is written there after every layer, and a rerun with the same PATH and
settings goes on where the last one stopped."""
import os
import sys

from tfcompress.commands import json_flag


def add_parser(p):
    p.add_argument("model", help="a .keras file, an .h5 file or a SavedModel folder")
    p.add_argument("--data", required=True,
                   help="labelled data spec: digits, npz:PATH, dir:PATH, keras:NAME, tfds:NAME")
    p.add_argument("--split", default="test", help="train, test or all: held-out data is what the curves "
                   "should be measured on (default: test)")
    p.add_argument("--samples", type=int, default=None, help="measure on the first N samples (default: all)")
    p.add_argument("--granularity", default="weight", choices=("weight", "channel"),
                   help="weight: magnitude pruning of each layer; channel: each coupled channel group "
                   "(default: weight)")
    p.add_argument("--sparsities", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                   help="comma-separated levels in (0, 1), increasing (default: 0.1,...,0.9)")
    p.add_argument("--criterion", default="l1", help="channel granularity: which channels go (default: l1)")
    p.add_argument("--round_to", type=int, default=None,
                   help="channel granularity: keep a multiple of this many channels (default: none)")
    p.add_argument("--repair", action="store_true",
                   help="channel granularity: fold removed channels' means into their readers and re-estimate "
                   "BatchNorm statistics on 512 training samples of --data before measuring each candidate")
    p.add_argument("--finetune_steps", type=int, default=0,
                   help="training steps on --data for each candidate before it is measured (default: 0)")
    p.add_argument("--plot", default=None, metavar="PNG", help="write the curves as a PNG")
    p.add_argument("--threshold", type=float, default=0.01,
                   help="metric drop drawn as a line in the plot (default: 0.01, one point of accuracy)")
    json_flag.add(p, "the report (with PATH: written after every layer; a rerun resumes it)")


def _sparsities(text):
    from tfcompress.errors import InputError
    try:
        return [float(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise InputError(f"--sparsities must be comma-separated numbers in (0, 1). Got: {text!r}") from None


def main(args):
    from tfcompress.errors import InputError
    from tfcompress.fileio import check_output
    say = json_flag.people(args)
    sparsities = _sparsities(args.sparsities)
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples must be >= 1. Got: {args.samples}")
    if args.round_to is not None and args.round_to < 1:
        raise InputError(f"--round_to must be >= 1. Got: {args.round_to}")
    if args.finetune_steps < 0:
        raise InputError(f"--finetune_steps must be >= 0. Got: {args.finetune_steps}")
    outputs = [o for o in (args.plot, json_flag.path(args)) if o]
    for out in outputs:
        check_output(out, [args.model])
    if args.plot and not args.plot.lower().endswith(".png"):
        raise InputError(f"--plot must name a .png file. Got: {args.plot}")
    if len(outputs) == 2 and os.path.abspath(outputs[0]) == os.path.abspath(outputs[1]):
        raise InputError("--plot and --json name the same file; give two names")
    if args.repair and args.granularity != "channel":
        raise InputError("--repair goes with --granularity channel")
    from tfcompress import data as data_mod
    from tfcompress.saving import check_model_path, kind_note, load_model
    check_model_path(args.model)
    x, y = data_mod.load(args.data, args.split)
    if y is None:
        raise InputError(f"data {args.data!r} has no labels; scan measures accuracy (npz arrays 'x' and 'y')")
    model = load_model(args.model)
    print(kind_note(args.model), file=say)
    x, note = data_mod.fit_to_input(x, model.input_shape)
    if note:
        print(f"note: {note}", file=say)
    if args.samples:
        x, y = x[:args.samples], y[:args.samples]
    repair = None
    if args.repair:
        repair = data_mod.fit_to_input(data_mod.load(args.data, "train")[0][:512], model.input_shape)[0]
    from tfcompress.choose.scan import sensitivity_scan
    report = sensitivity_scan(model, (x, y), sparsities, args.granularity, finetune_steps=args.finetune_steps,
                              criterion=args.criterion, round_to=args.round_to, repair=repair,
                              path=json_flag.path(args),
                              verbose=1 if say is sys.stdout and sys.stdout.isatty() else 0)
    print(report.table(), file=say)
    if args.plot:
        report.plot(args.plot, threshold=args.threshold)
        print(f"wrote {args.plot}", file=say)
    if json_flag.path(args):
        print(f"wrote {json_flag.path(args)}", file=say)
    elif args.json:
        print(report.to_json())
    return 0
