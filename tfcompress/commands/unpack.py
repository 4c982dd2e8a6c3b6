"""`tfcompress unpack PACK.tfcz -o OUT.tflite`: restore a .tflite file from a pack, verified."""
import sys


def add_parser(parser):
    parser.add_argument("pack", metavar="PACK.tfcz", help="a pack written by `tfcompress size --pack`")
    parser.add_argument("-o", "--output", metavar="OUT.tflite", required=True,
                        help="where to write the restored .tflite (checked against the SHA-256 stored in "
                             "the pack before it is renamed into place; never written over PACK)")


def main(args):
    from tfcompress.tflite.size import unpack_file

    unpack_file(args.pack, args.output)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0
