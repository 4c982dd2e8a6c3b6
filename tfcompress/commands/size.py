"""`tfcompress size FILE.tflite [--json] [--pack OUT.tfcz]`: file, gzip and Deep-Compression sizes."""
import json
import sys


def add_parser(parser):
    parser.add_argument("file", metavar="FILE.tflite", help="the .tflite file to measure")
    parser.add_argument("--json", action="store_true",
                        help="print the report as JSON on stdout instead of a table (redirect to save it)")
    parser.add_argument("--pack", metavar="OUT.tfcz", default=None,
                        help="also write the coding as a .tfcz pack; `tfcompress unpack` restores the "
                             ".tflite byte for byte. Never written over FILE")


def main(args):
    from tfcompress.tflite.size import format_table, size_report, write_pack

    report = write_pack(args.file, args.pack) if args.pack else size_report(args.file)
    if args.json:
        d = report.to_dict()
        d["pack"] = args.pack
        print(json.dumps(d, indent=2))
    else:
        print(format_table(report))
        if args.pack:
            print(f"wrote {args.pack} ({report.pack_bytes:,} bytes)", file=sys.stderr)
    return 0
