"""`tfcompress` command line: each subcommand is a thin function over a library call.

Subcommands live in `tfcompress/commands/<name>.py`, each with `add_parser(subparsers)` and
`main(args) -> int`. They are imported only when named, so `tfcompress bench` and `--help` do not
pay for TensorFlow unless the command needs it. Run as a program, a command's stderr carries no
TensorFlow start-up log lines (`tfcompress.commands.native_logs`); `TFCOMPRESS_DEBUG=1` shows them.
"""
import argparse
import importlib
import os
import sys

# name -> (module, one-line help). Help text lives here so `tfcompress --help` imports nothing.
COMMANDS = {
    "run": ("run", "run a YAML recipe (train, compress, export, benchmark)"),
    "report": ("report", "rebuild a run's report.md and its pictures from its summary.json"),
    "export": ("export", "convert a Keras model to TFLite (int8 by default, ReLU6 pinned)"),
    "inspect": ("inspect", "ops, tensors, quantization and sparsity of a .tflite file"),
    "eval": ("eval", "accuracy of a .tflite file, and agreement with a float model"),
    "size": ("size", "file, gzip and Deep-Compression coded sizes; --pack writes the coding"),
    "unpack": ("unpack", "restore a .tflite file from a .tfcz pack"),
    "scan": ("scan", "per-layer pruning sensitivity"),
    "bench": ("bench", "benchmark .tflite files locally, over adb or over ssh"),
    "prune-channels": ("prune_channels", "physically remove channels from a Keras model"),
    "low-rank": ("low_rank", "factor Dense and Conv2D layers into two thinner ones (truncated SVD)"),
    "optimize": ("optimize", "NetAdapt to a measured latency target, QAT, int8 export, benchmark"),
}


def _available():
    here = os.path.join(os.path.dirname(__file__), "commands")
    return {name: spec for name, spec in COMMANDS.items()
            if os.path.exists(os.path.join(here, spec[0] + ".py"))}


def build_parser(load=None):
    parser = argparse.ArgumentParser(
        prog="tfcompress",
        description="Compress tf-keras models, export TFLite, measure them on the device.")
    parser.add_argument("--verbose", action="store_true",
                        help="let TensorFlow's and LiteRT's log lines through to stderr (filtered out by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, helptext) in _available().items():
        if load is None or load == name:
            mod = importlib.import_module(f"tfcompress.commands.{module}")
            p = sub.add_parser(name, help=helptext, description=helptext)
            mod.add_parser(p)
            p.set_defaults(_main=mod.main)
        else:
            sub.add_parser(name, help=helptext, add_help=False)
    return parser


def main(argv=None):
    """Runs one command; returns its exit code. With `argv=None` (the console script, `python -m
    tfcompress.cli`) this is the whole process, and its stderr is filtered of TensorFlow's log noise."""
    whole_process = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = build_parser(load=command if command in _available() else "")
        args = parser.parse_args(argv)
        if not getattr(args, "_main", None):
            parser.print_help()
            return 0 if not argv or argv[0] in ("-h", "--help") else 2
        if whole_process and not args.verbose:
            from tfcompress.commands.native_logs import filter_stderr
            filter_stderr()
        return int(args._main(args) or 0)
    except KeyboardInterrupt:
        print("tfcompress: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tfcompress inspect m.tflite --json | head`: the reader left, not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as e:  # one line for the user; the traceback only when asked for
        if os.environ.get("TFCOMPRESS_DEBUG") == "1":
            raise
        from tfcompress.errors import Error
        if isinstance(e, Error):
            print(f"tfcompress: error: {e}", file=sys.stderr)
            return 1
        print(f"tfcompress: internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
              "(set TFCOMPRESS_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
