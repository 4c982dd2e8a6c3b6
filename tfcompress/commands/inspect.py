"""`tfcompress inspect FILE.tflite [--json]`: ops, tensors, quantization and weight sparsity of a file."""
import json


def add_parser(parser):
    parser.add_argument("file", metavar="FILE.tflite", help="the .tflite file to read")
    parser.add_argument("--json", action="store_true",
                        help="print the facts as JSON on stdout instead of a table (redirect to save them)")


def main(args):
    from tfcompress.tflite.reader import format_table, inspect

    info = inspect(args.file)
    print(json.dumps(info, indent=2) if args.json else format_table(info))
    return 0
