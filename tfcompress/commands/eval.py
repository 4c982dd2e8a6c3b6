"""`tfcompress eval FILE.tflite --data SPEC [--float MODEL]`: accuracy of a .tflite file on labelled data,
and its top-1 agreement with the float Keras model it came from."""
import json
import os

from tfcompress.commands import json_flag


def add_parser(p):
    p.add_argument("file", metavar="FILE.tflite", help="the .tflite file to evaluate")
    p.add_argument("--data", default="digits",
                   help="data spec: digits, npz:PATH, dir:PATH, keras:NAME, tfds:NAME (default: digits)")
    p.add_argument("--split", default="test", help="train, test or all (default: test)")
    p.add_argument("--float", dest="float_model", default=None, metavar="MODEL",
                   help="a .keras / .h5 / SavedModel to compare with (agreement, max output difference)")
    p.add_argument("--samples", type=int, default=None, help="evaluate on the first N samples (default: all)")
    p.add_argument("--num_threads", type=int, default=1, help="interpreter threads (default: 1)")
    json_flag.add(p, "the results")


def evaluate_file(path, x, y=None, float_model=None, num_threads=1):
    """{file, samples, runtime, accuracy, float_accuracy, agreement, max_abs_diff} of a .tflite file on
    (x, y); the keys the data or the float model cannot give are left out
    (`tfcompress.evaluation.evaluate_tflite` computes them)."""
    from tfcompress.evaluation import evaluate_tflite
    result = evaluate_tflite(os.fspath(path), x, y, reference=float_model, num_threads=num_threads)
    out = {"file": os.fspath(path), **result.to_dict()}
    return {k: v for k, v in out.items() if v is not None}


def format_result(r):
    lines = [f"{r['file']}: {r['samples']} samples ({r['runtime']})"]
    if "accuracy" in r:
        lines.append(f"  accuracy: {r['accuracy']:.4f}")
    if "float_accuracy" in r:
        lines.append(f"  float model accuracy: {r['float_accuracy']:.4f} "
                     f"({100 * (r['accuracy'] - r['float_accuracy']):+.2f} points for the file)")
    if "agreement" in r:
        lines.append(f"  top-1 agreement with the float model: {r['agreement']:.4f}")
    if "max_abs_diff" in r:
        lines.append(f"  max |float - tflite| output: {r['max_abs_diff']:.6g}")
    return "\n".join(lines)


def main(args):
    from tfcompress.errors import InputError
    from tfcompress.fileio import check_output
    from tfcompress.tflite import reader
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples must be >= 1. Got: {args.samples}")
    if args.num_threads < 1:
        raise InputError(f"--num_threads must be >= 1. Got: {args.num_threads}")
    inputs = [args.file] + ([args.float_model] if args.float_model else [])
    if json_flag.path(args):
        check_output(json_flag.path(args), inputs)
    m = reader.read(args.file)             # a missing or non-.tflite file fails here, in one line
    if args.float_model:
        from tfcompress.saving import check_model_path
        check_model_path(args.float_model)  # before the data and TensorFlow load
    if len(m.inputs) != 1:
        raise InputError(f"{args.file} has {len(m.inputs)} inputs; eval feeds one array")
    from tfcompress import data as data_mod
    x, y = data_mod.load(args.data, args.split)
    if y is None:
        raise InputError(f"data {args.data!r} has no labels; eval needs (x, y) (npz arrays 'x' and 'y')")
    shape = (None, *m.inputs[0].shape[1:])
    x, note = data_mod.fit_to_input(x, shape)
    if note:
        print(f"note: {note}", file=json_flag.people(args))
    if args.samples:
        x, y = x[:args.samples], y[:args.samples]
    if not len(x):
        raise InputError(f"data {args.data!r} split {args.split!r} is empty")
    model = None
    if args.float_model:
        from tfcompress.saving import kind_note, load_model
        model = load_model(args.float_model)
        print(kind_note(args.float_model), file=json_flag.people(args))
        if tuple(model.input_shape[1:]) != tuple(shape[1:]):
            raise InputError(f"the float model takes input {tuple(model.input_shape[1:])}, the file "
                             f"{tuple(shape[1:])}: is --float the model this file was exported from?")
    result = evaluate_file(args.file, x, y, model, num_threads=args.num_threads)
    print(format_result(result), file=json_flag.people(args))
    json_flag.emit(args, json.dumps(result, indent=2), inputs)
    return 0
