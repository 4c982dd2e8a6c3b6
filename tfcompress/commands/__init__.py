"""One module per `tfcompress` subcommand: `add_parser(parser)` and `main(args) -> int`; `native_logs`
keeps TensorFlow's start-up log lines off their stderr."""
