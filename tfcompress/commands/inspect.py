"""`tfcompress inspect FILE.tflite [--json [PATH]]`: ops, tensors, quantization and weight sparsity of a file."""
import json

import numpy as np

from tfcompress.commands import json_flag


def add_parser(parser):
    parser.add_argument("file", nargs="?", metavar="FILE.tflite", help="the .tflite file to read")
    json_flag.add(parser, "the facts")


def main(args):
    from tfcompress.errors import InputError
    from tfcompress.fileio import check_output
    from tfcompress.tflite.reader import format_table, inspect

    json_flag.positional_swap(args, "file")
    if args.file is None:
        raise InputError("give the .tflite file to read: tfcompress inspect FILE.tflite [--json [PATH]]")
    if json_flag.path(args):
        check_output(json_flag.path(args), [args.file])
    info = inspect(args.file)
    # INT4 kernels have no byte view, so the weight table leaves them out: listed here
    int4 = [t for t in info["tensors"] if t["constant"] and t["dtype"] == "int4"]
    info["int4_weights"] = [{"name": t["name"], "shape": t["shape"], "bytes": t["bytes"]} for t in int4]
    json_flag.emit(args, json.dumps(info, indent=2), [args.file])
    print(format_table(info), file=json_flag.people(args))
    if int4:
        values = sum(int(np.prod(t["shape"])) for t in int4)
        print(f"int4 weights: {len(int4)} tensors, {values:,} values, {sum(t['bytes'] for t in int4):,} bytes "
              "(two values a byte)", file=json_flag.people(args))
    return 0
