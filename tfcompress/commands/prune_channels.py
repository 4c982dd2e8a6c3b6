"""`tfcompress prune-channels MODEL -o OUT --ratio R --criterion C`: remove whole channels from a Keras model
and print params and FLOPs (2 x multiply-accumulates) before and after."""
import json
import os
import warnings

from tfcompress.commands import json_flag

CRITERIA = ("l1", "l2", "bn_gamma", "apoz", "taylor", "random", "merge")
_FORMATS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}


def add_parser(p):
    p.add_argument("model", help="a .keras file, an .h5 file or a SavedModel folder")
    p.add_argument("-o", "--output", required=True,
                   help="where to write the smaller model: .keras, .h5, or a folder name for a SavedModel")
    p.add_argument("--ratio", default="0.5", help="fraction of each coupled group's channels to remove, "
                   "in [0, 1) (default: 0.5)")
    p.add_argument("--criterion", default="l1", help=f"one of {', '.join(CRITERIA)} (default: l1)")
    p.add_argument("--data", default=None, help="data spec for apoz and taylor: digits, npz:PATH, dir:PATH, "
                   "keras:NAME, tfds:NAME (default: none)")
    p.add_argument("--samples", type=int, default=256, help="samples of --data to score on (default: 256)")
    p.add_argument("--round_to", type=int, default=None,
                   help="keep a multiple of this many channels per group, e.g. 8 for XNNPACK (default: none)")
    p.add_argument("--skip", default="", help="comma-separated layer names whose groups stay whole")
    p.add_argument("--seed", type=int, default=0, help="seed of the random criterion (default: 0)")
    p.add_argument("--global_ranking", action="store_true",
                   help="rank channels across groups: the same total is removed where scores are lowest")
    p.add_argument("--keep_residual", action="store_true",
                   help="leave residual streams (groups joined by Add and the like) whole; prune inside the blocks")
    p.add_argument("--repair", action="store_true",
                   help="with --data: fold the removed channels' mean activations into their consumers and "
                        "re-estimate BatchNorm statistics (tfc.prune_channels(compensate=...) and "
                        "tfc.recalibrate_batchnorm): a better start for fine-tuning")
    p.add_argument("--groups", action="store_true", help="also print the channel groups of the model")
    json_flag.add(p, "the numbers")


def _ratio(text):
    from tfcompress.errors import InputError
    try:
        r = float(text)
    except ValueError:
        raise InputError(f"--ratio must be a number in [0, 1). Got: {text!r}") from None
    if not 0.0 <= r < 1.0:
        raise InputError(f"--ratio must be a number in [0, 1) (the fraction of channels to remove). Got: {text}")
    return r


def main(args):
    from tfcompress.errors import InputError
    from tfcompress.fileio import atomic_path, check_output
    say = json_flag.people(args)
    ratio = _ratio(args.ratio)
    if args.criterion not in CRITERIA:
        raise InputError(f"unknown criterion {args.criterion!r}; choose one of {', '.join(CRITERIA)}")
    if args.criterion in ("apoz", "taylor") and not args.data:
        raise InputError(f"criterion {args.criterion!r} needs --data SPEC (e.g. --data digits)")
    if args.repair and not args.data:
        raise InputError("--repair needs --data SPEC (e.g. --data digits)")
    if args.samples < 1:
        raise InputError(f"--samples must be >= 1. Got: {args.samples}")
    if args.round_to is not None and args.round_to < 1:
        raise InputError(f"--round_to must be >= 1. Got: {args.round_to}")
    out = check_output(args.output, [args.model])
    if os.path.exists(args.model) and os.path.abspath(out) == os.path.abspath(args.model):
        raise InputError("the output would overwrite the model; choose another name")
    if json_flag.path(args):
        check_output(json_flag.path(args), [args.model, out])
    fmt = _FORMATS.get(os.path.splitext(out)[1].lower(), "tf")
    if fmt == "tf" and os.path.splitext(out)[1]:
        raise InputError(f"output must end in .keras or .h5, or be a folder name for a SavedModel. Got: {out}")
    from tfcompress import data as data_mod
    from tfcompress.saving import check_model_path, kind_note, load_model, model_kind, save_model
    check_model_path(args.model)                  # the model file and the data spec are checked before
    kind = model_kind(args.model)                 # TensorFlow loads; the output is of the kind read
    if kind == "keras3" and fmt == "tf":
        raise InputError(f"{args.model} is a Keras 3 model: write it as .keras or .h5. Got: {out}")
    x = None
    if args.data:
        x, y = data_mod.load(args.data, "train")
    model = load_model(args.model)
    print(kind_note(args.model), file=say)
    data = None
    if x is not None:
        x, note = data_mod.fit_to_input(x, model.input_shape)
        if note:
            print(f"note: {note}", file=say)
        data = (x[:args.samples], y[:args.samples]) if y is not None else x[:args.samples]
    from tfcompress.analysis import flops, params
    from tfcompress.pruning.channels import channel_groups, plan_and_prune
    if args.groups:
        print(channel_groups(model), file=say)
    skip = [s for s in args.skip.split(",") if s]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = plan_and_prune(model, ratio, args.criterion, data, args.round_to, skip, args.seed,
                                args.global_ranking, args.keep_residual, compensate=data if args.repair else None)
    small = result.model
    if args.repair:
        from tfcompress.pruning.batchnorm import recalibrate_batchnorm
        recalibrate_batchnorm(small, data)
    for note in result.notes:
        print(f"note: {note}", file=say)
    before = {"params": params(model), "flops": flops(model)}
    after = {"params": params(small), "flops": flops(small)}
    print(f"{'':<8}{'before':>14}{'after':>14}{'ratio':>8}", file=say)
    for k, name in (("params", "params"), ("flops", "FLOPs")):
        print(f"{name:<8}{before[k]:>14,}{after[k]:>14,}{after[k] / max(before[k], 1):>8.3f}", file=say)
    print("(FLOPs = 2 x multiply-accumulates of Conv/Dense layers, batch 1)", file=say)
    if kind == "keras3":
        save_model(small, out, "keras3", inputs=[args.model])
    else:
        with atomic_path(out, inputs=[args.model]) as tmp:
            small.save(tmp, save_format=fmt)
    print(f"wrote {out}", file=say)
    json_flag.emit(args, json.dumps({"model": args.model, "output": out, "ratio": ratio,
                                     "criterion": args.criterion, "round_to": args.round_to,
                                     "keep_residual": args.keep_residual, "repair": args.repair,
                                     "before": before, "after": after, "notes": result.notes}, indent=2),
                   [args.model, out])
    return 0
