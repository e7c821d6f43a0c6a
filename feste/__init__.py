"""feste: the application around the specification (the `feste` command).

The command line (one module per subcommand in `feste.commands`), the
trainer that drives any implementation (`feste.trainer`, SPEC §trainer), run
directories (`feste.rundir`, SPEC §run-directories), micro-batches and process groups
(`feste.accumulate`, `feste.distributed`, SPEC §micro-batches), corpus download and
caching (`feste.corpus`), Hugging Face export/import (`feste.hf`, SPEC §hugging-face). It imports `reference` and, when it imports, `fast`; nothing in
`reference/` imports this package.
"""
__version__ = "0.1.0"
