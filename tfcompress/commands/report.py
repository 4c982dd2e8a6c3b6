"""`tfcompress report OUT`: rebuild a recipe run's report (`OUT/report.md` and its PNGs) from `OUT/summary.json`."""
import os


def add_parser(p):
    p.add_argument("folder", metavar="OUT", help="the output folder of `tfcompress run` (it holds summary.json); "
                                                 "its summary.json may be named instead")


def main(args):
    from tfcompress import run_report
    summary = run_report.load_summary(args.folder)   # bad input is refused before matplotlib loads
    folder = args.folder if os.path.isdir(args.folder) else os.path.dirname(args.folder) or "."
    report, images = run_report.write(folder, summary)
    for path in [report, *images]:
        print(f"written: {path}")
    return 0
