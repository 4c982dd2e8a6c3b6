"""`tfcompress size FILE.tflite [--json] [--pack OUT.tfcz] [--clusters K]`: file, gzip and
Deep-Compression sizes; optionally checks that clustering left at most K values per channel."""
import json
import sys


def add_parser(parser):
    parser.add_argument("file", metavar="FILE.tflite", help="the .tflite file to measure")
    parser.add_argument("--json", action="store_true",
                        help="print the report as JSON on stdout instead of a table (redirect to save it)")
    parser.add_argument("--pack", metavar="OUT.tfcz", default=None,
                        help="also write the coding as a .tfcz pack; `tfcompress unpack` restores the "
                             ".tflite byte for byte. Never written over FILE")
    parser.add_argument("--clusters", metavar="K", type=str, default=None,
                        help="check that every weight tensor holds at most K distinct values in each output "
                             "channel (what tfc.cluster promises); exit 1 naming the first tensor that holds more")


def main(args):
    from tfcompress.tflite.size import check_clusters, format_table, size_report, write_pack

    from tfcompress.errors import InputError
    if args.clusters is not None:
        try:
            args.clusters = int(args.clusters)
        except ValueError:
            raise InputError(f"--clusters must be a positive integer. Got: {args.clusters!r}") from None
        if args.clusters < 1:
            raise InputError(f"--clusters must be a positive integer. Got: {args.clusters}")
    counts = check_clusters(args.file, args.clusters) if args.clusters is not None else None
    report = write_pack(args.file, args.pack) if args.pack else size_report(args.file)
    if args.json:
        d = report.to_dict()
        d["pack"] = args.pack
        if counts is not None:
            d["clusters"] = {"limit": args.clusters, "tensors": [c.to_dict() for c in counts]}
        print(json.dumps(d, indent=2))
    else:
        print(format_table(report))
        if counts is not None:
            most = max((c.per_channel for c in counts), default=0)
            print(f"clusters: every weight tensor holds at most {most} distinct values per channel "
                  f"(limit {args.clusters})")
        if args.pack:
            print(f"wrote {args.pack} ({report.pack_bytes:,} bytes)", file=sys.stderr)
    return 0
