"""One module per ``diffill`` subcommand, each with ``register(subparsers)``."""
