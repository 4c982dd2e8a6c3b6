"""`--json [PATH]`, the same on every command: without PATH the JSON goes to stdout (and what the command
prints for people goes to stderr, so `> out.json` holds JSON only); with PATH it is written to that file
(atomically, never over an input) and the command prints as usual."""
import sys

STDOUT = "-"


def add(parser, what):
    parser.add_argument("--json", nargs="?", const=STDOUT, default=None, metavar="PATH",
                        help=f"{what} as JSON: on stdout without PATH (the table then goes to stderr), "
                             "else written to PATH")


def path(args):
    """The file `--json` names, or None (no `--json`, or JSON on stdout)."""
    return None if args.json in (None, STDOUT) else args.json


def people(args):
    """Where the command's table and notes go: stderr when stdout carries the JSON."""
    return sys.stderr if args.json == STDOUT else sys.stdout


def emit(args, text, inputs=()):
    """Writes the JSON text where `--json` says; nothing without `--json`."""
    if args.json == STDOUT:
        print(text)
    elif args.json is not None:
        from tfcompress.fileio import write_text
        write_text(args.json, text, inputs)


def positional_swap(args, name):
    """`inspect --json FILE`: argparse gives FILE to `--json`; the command's file it was."""
    if getattr(args, name) is None and args.json not in (None, STDOUT):
        setattr(args, name, args.json)
        args.json = STDOUT
