"""feste: the application around the specification (the `feste` command).

The command line (one module per subcommand in `feste.commands`), corpus
download and caching (`feste.corpus`), Hugging Face export/import
(`feste.hf`, SPEC section 11). It imports `reference` and, when it imports, `fast`; nothing in
`reference/` imports this package.
"""
__version__ = "0.1.0"
