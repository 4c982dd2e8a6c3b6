"""`tfcompress size FILE.tflite [--json [PATH]] [--pack OUT.tfcz] [--clusters K]`: file, gzip and
Deep-Compression sizes, bits per weight stored and after coding (int4 tensors included); optionally
checks that clustering left at most K values per channel."""
import json
import sys

from tfcompress.commands import json_flag


def add_parser(parser):
    parser.add_argument("file", nargs="?", metavar="FILE.tflite", help="the .tflite file to measure")
    json_flag.add(parser, "the report")
    parser.add_argument("--pack", metavar="OUT.tfcz", default=None,
                        help="also write the coding as a .tfcz pack; `tfcompress unpack` restores the "
                             ".tflite byte for byte. Never written over FILE")
    parser.add_argument("--clusters", metavar="K", type=str, default=None,
                        help="check that every weight tensor holds at most K distinct values in each output "
                             "channel (what tfc.cluster promises); exit 1 naming the first tensor that holds more")


def main(args):
    from tfcompress.tflite.low_bit import weight_bits
    from tfcompress.tflite.size import check_clusters, format_table, size_report, write_pack

    from tfcompress.errors import InputError
    from tfcompress.fileio import check_output
    json_flag.positional_swap(args, "file")
    if args.file is None:
        raise InputError("give the .tflite file to measure: tfcompress size FILE.tflite [--json [PATH]]")
    if json_flag.path(args):
        check_output(json_flag.path(args), [args.file] + ([args.pack] if args.pack else []))
    if args.clusters is not None:
        try:
            args.clusters = int(args.clusters)
        except ValueError:
            raise InputError(f"--clusters must be a positive integer. Got: {args.clusters!r}") from None
        if args.clusters < 1:
            raise InputError(f"--clusters must be a positive integer. Got: {args.clusters}")
    counts = check_clusters(args.file, args.clusters) if args.clusters is not None else None
    report = write_pack(args.file, args.pack) if args.pack else size_report(args.file)
    bits, total = weight_bits(args.file)
    if args.json:
        d = report.to_dict()
        d["bits_per_weight"] = {**total, "tensors": bits}
        d["pack"] = args.pack
        if counts is not None:
            d["clusters"] = {"limit": args.clusters, "tensors": [c.to_dict() for c in counts]}
        json_flag.emit(args, json.dumps(d, indent=2), [args.file])
    say = json_flag.people(args)
    print(format_table(report), file=say)
    if total["elements"]:
        by = {}
        for b in bits:
            n, s, c = by.get(b["dtype"], (0, 0.0, 0.0))
            by[b["dtype"]] = (n + b["elements"], s + b["stored_bits"] * b["elements"], c + b["coded_bits"] * b["elements"])
        kinds = ", ".join(f"{k} {n:,} weights {s / n:.2f} -> {c / n:.2f}" for k, (n, s, c) in by.items())
        print(f"bits per weight: stored {total['stored_bits']:.2f}, after coding {total['coded_bits']:.2f} "
              f"({kinds})", file=say)
    if counts is not None:
        most = max((c.per_channel for c in counts), default=0)
        print(f"clusters: every weight tensor holds at most {most} distinct values per channel "
              f"(limit {args.clusters})", file=say)
    if args.pack:
        print(f"wrote {args.pack} ({report.pack_bytes:,} bytes)", file=sys.stderr)
    return 0
