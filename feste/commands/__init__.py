"""One module per `feste` subcommand: each has `add_parser(subparsers)`, which
registers the subcommand and sets `func=run`, and `run(args) -> exit code`.
`COMMANDS` is the order `feste --help` lists them in."""
from . import bench, corpus, demo, export, generate, import_, inspect, plot, tokenizer, train, vectors

COMMANDS = (corpus, tokenizer, demo, train, generate, inspect, export, import_, plot, bench, vectors)
