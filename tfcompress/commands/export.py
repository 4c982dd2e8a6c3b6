"""`tfcompress export MODEL -o OUT.tflite`: convert a Keras model to TFLite and print the report."""
import json

from tfcompress.commands import json_flag

MODES = ("int8", "int16x8", "float16", "dynamic", "float32")


def add_parser(p):
    p.add_argument("model", help="a .keras file, an .h5 file or a SavedModel folder")
    p.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    p.add_argument("--mode", default="int8", help=f"one of {', '.join(MODES)} (default: int8)")
    p.add_argument("--data", default="digits",
                   help="data spec for calibration and evaluation: digits, npz:PATH, dir:PATH, keras:NAME, "
                        "tfds:NAME (default: digits)")
    p.add_argument("--samples", type=int, default=256, help="representative samples (default: 256)")
    p.add_argument("--input_type", default=None, help="int8 (default for int8), uint8 or float32")
    p.add_argument("--output_type", default=None, help="int8 (default for int8), uint8 or float32")
    p.add_argument("--no-relu6-pin", dest="pin", action="store_false",
                   help="let the converter calibrate ReLU6 ranges from data instead of pinning them to [0, 6]")
    p.add_argument("--per-tensor", dest="per_channel", action="store_false",
                   help="one scale per weight tensor instead of per output channel (int8, int16x8)")
    p.add_argument("--bias-correction", dest="bias_correction", action="store_true",
                   help="correct each layer's bias for the mean shift of its weight quantization, measured on "
                        "the calibration data (int8, int16x8)")
    p.add_argument("--no-eval", dest="eval", action="store_false", help="skip the float-vs-TFLite evaluation")
    json_flag.add(p, "the report")
    p.add_argument("--report", default=None, metavar="PATH", help="also write the report as Markdown to PATH")


def main(args):
    import os
    from tfcompress.errors import InputError
    from tfcompress.fileio import check_output, write_text
    if args.mode not in MODES:
        raise InputError(f"unknown mode {args.mode!r}; choose one of {', '.join(MODES)}")
    if (args.bias_correction or not args.per_channel) and args.mode not in ("int8", "int16x8"):
        flag = "--bias-correction" if args.bias_correction else "--per-tensor"
        raise InputError(f"{flag} applies to int8 and int16x8 export. Got: --mode {args.mode}")
    if args.samples < 1:
        raise InputError(f"--samples must be >= 1. Got: {args.samples}")
    inputs = [args.model]
    out = check_output(args.output, inputs)
    for extra in (json_flag.path(args), args.report):
        if extra:
            check_output(extra, inputs + [out])
    if os.path.exists(args.model) and os.path.exists(out) and os.path.samefile(args.model, out):
        raise InputError("the output would overwrite the model")
    from tfcompress import data as data_mod
    from tfcompress.saving import check_model_path, kind_note, load_model
    check_model_path(args.model)               # the model file and the data spec are checked before TensorFlow
    x, _ = data_mod.load(args.data, "train")   # loads; the model first, as it is the cheaper check
    from tfcompress.exporting import export
    model = load_model(args.model)
    print(kind_note(args.model), file=json_flag.people(args))
    x, note = data_mod.fit_to_input(x, model.input_shape)
    if note:
        print(f"note: {note}", file=json_flag.people(args))
    eval_data = None
    if args.eval:
        xt, yt = data_mod.load(args.data, "test")
        xt, _ = data_mod.fit_to_input(xt, model.input_shape)
        eval_data = (xt, yt) if yt is not None and len(xt) else None
    report = export(model, out, mode=args.mode, representative_data=x[:args.samples], eval_data=eval_data,
                    input_type=args.input_type, output_type=args.output_type, relu6_fixed_range=args.pin,
                    samples=args.samples, per_channel=args.per_channel, bias_correction=args.bias_correction)
    print(report.format(), file=json_flag.people(args))
    json_flag.emit(args, json.dumps(report.to_dict(), indent=2, default=float), inputs)
    if args.report:
        write_text(args.report, _markdown(report))
    return 0


def _markdown(report):
    try:
        from tfcompress.report import to_markdown
    except ImportError:
        return "# Export report\n\n```\n" + report.format() + "\n```\n"
    return to_markdown(report)
