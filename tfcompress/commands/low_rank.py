"""`tfcompress low-rank MODEL -o OUT --ratio R`: factor Dense and Conv2D layers by truncated SVD
(`tfc.low_rank`) and print each layer's rank and the MACs and parameters before and after."""
import json
import os

from tfcompress.commands import json_flag

METHODS = ("weight", "spatial")
_FORMATS = (".keras", ".h5", ".hdf5")


def add_parser(p):
    p.add_argument("model", help="a .keras file, an .h5 file or a SavedModel folder")
    p.add_argument("-o", "--output", required=True,
                   help="where to write the factored model: .keras, .h5, or a folder name for a SavedModel")
    how = p.add_argument_group("how small (exactly one)")
    how.add_argument("--ratio", default=None,
                     help="fraction of the factored layers' MACs to keep, in (0, 1], e.g. 0.25")
    how.add_argument("--target_macs", default=None, help="the whole model's multiply-accumulates after factoring")
    how.add_argument("--energy", default=None,
                     help="per layer, the fraction of squared singular values to keep, in (0, 1], e.g. 0.95")
    how.add_argument("--ranks", default=None, help="explicit ranks, e.g. fc1=64,fc2=32 (not rounded)")
    p.add_argument("--method", default="weight",
                   help="weight (Dense; Conv kxk then 1x1) or spatial (Conv kx1 then 1xk) (default: weight)")
    p.add_argument("--layers", default=None, help="comma-separated layer names that may be factored "
                   "(default: every Dense and Conv2D the method can factor)")
    p.add_argument("--round_to", type=int, default=8,
                   help="ranks from --ratio, --target_macs or --energy are multiples of this (default: 8)")
    json_flag.add(p, "the plan and the numbers")


def _number(flag, text, kind=float):
    from tfcompress.errors import InputError
    try:
        value = kind(text)
    except ValueError:
        raise InputError(f"{flag} must be {'an integer' if kind is int else 'a number'}. Got: {text!r}") from None
    return value


def _ranks(text):
    from tfcompress.errors import InputError
    out = {}
    for item in (t for t in text.split(",") if t):
        name, sep, k = item.partition("=")
        if not sep or not name:
            raise InputError(f"--ranks takes name=rank pairs separated by commas, e.g. fc1=64,fc2=32. Got: {item!r}")
        out[name] = _number(f"--ranks {name}", k, int)
    if not out:
        raise InputError(f"--ranks names no layer. Got: {text!r}")
    return out


def parse_budget(args):
    """{ranks | ratio | target_macs | energy: value} from the flags, checked without TensorFlow."""
    from tfcompress.errors import InputError
    given = {k: getattr(args, k) for k in ("ratio", "target_macs", "energy", "ranks") if getattr(args, k) is not None}
    if len(given) != 1:
        raise InputError("give exactly one of --ratio, --target_macs, --energy, --ranks. "
                         f"Got: {', '.join('--' + k for k in given) or 'none'}")
    (key, text), = given.items()
    if key == "ranks":
        return {"ranks": _ranks(text)}
    if key == "target_macs":
        value = _number("--target_macs", text.replace(",", "").replace("_", ""), int)
        if value <= 0:
            raise InputError(f"--target_macs must be a positive integer. Got: {text}")
        return {key: value}
    value = _number(f"--{key}", text)
    if not 0.0 < value <= 1.0:
        raise InputError(f"--{key} must be a number in (0, 1]. Got: {text}")
    return {key: value}


def main(args):
    from tfcompress.errors import InputError
    from tfcompress.fileio import check_output
    say = json_flag.people(args)
    budget = parse_budget(args)
    if args.method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}. Got: {args.method!r}")
    if args.round_to < 1:
        raise InputError(f"--round_to must be >= 1. Got: {args.round_to}")
    out = check_output(args.output, [args.model])
    if os.path.exists(args.model) and os.path.abspath(out) == os.path.abspath(args.model):
        raise InputError("the output would overwrite the model; choose another name")
    ext = os.path.splitext(out)[1].lower()
    if ext and ext not in _FORMATS:
        raise InputError(f"output must end in .keras or .h5, or be a folder name for a SavedModel. Got: {out}")
    if json_flag.path(args):
        check_output(json_flag.path(args), [args.model, out])
    from tfcompress.saving import check_model_path, model_kind
    check_model_path(args.model)                  # before TensorFlow loads
    kind = model_kind(args.model)
    from tfcompress.analysis import macs, params
    from tfcompress.architecture.factorize import low_rank
    from tfcompress.architecture.ranks import candidates, format_plan, plan_ranks
    from tfcompress.saving import load_model, save_model
    model = load_model(args.model)
    layers = [n for n in args.layers.split(",") if n] if args.layers else None
    cands = candidates(model, args.method, layers, budget.get("ranks"))
    plan = plan_ranks(model, method=args.method, layers=layers, round_to=args.round_to, cands=cands, **budget)
    small = low_rank(model, method=args.method, layers=None if "ranks" in budget else layers,
                     round_to=args.round_to, **budget)
    print(format_plan(plan), file=say)
    before = {"params": params(model), "macs": macs(model)}
    after = {"params": params(small), "macs": macs(small)}
    print(f"\n{'model':<8}{'before':>14}{'after':>14}{'ratio':>8}", file=say)
    for k, name in (("params", "params"), ("macs", "MACs")):
        print(f"{name:<8}{before[k]:>14,}{after[k]:>14,}{after[k] / max(before[k], 1):>8.3f}", file=say)
    print("(MACs: multiply-accumulates of Conv/Dense layers, batch 1; fine-tune the factored model before use)",
          file=say)
    save_model(small, out, kind=kind, inputs=[args.model])
    print(f"wrote {out}", file=say)
    json_flag.emit(args, json.dumps({"model": args.model, "output": out, "method": args.method,
                                     "round_to": args.round_to, **{k: v for k, v in budget.items()},
                                     "layers": [r.to_dict() for r in plan], "before": before, "after": after},
                                    indent=2), [args.model, out])
    return 0
