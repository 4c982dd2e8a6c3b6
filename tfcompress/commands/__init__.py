"""One module per `tfcompress` subcommand: `add_parser(parser)` and `main(args) -> int`."""
