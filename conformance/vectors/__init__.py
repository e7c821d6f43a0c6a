"""Language-neutral vectors and the adapter protocol (SPEC §vectors).

    python -m conformance.vectors build DIR            # write DIR/<SPEC_VERSION>/...
    pytest --pyargs conformance.vectors --vectors DIR --adapter "CMD ..."
    python -m conformance.vectors.adapter --impl reference|fast|torch_impl

`build` (conformance/vectors/build.py) generates the cases from `reference`;
`compare.py` holds the comparison kinds a case may name; `protocol.py` the
runner's side of the adapter protocol; `adapter.py` a Python adapter that
serves any implementation of the contract; `test_vectors.py` is the runner
(one pytest test per case).
"""
from __future__ import annotations

from pathlib import Path

# The version of the rules a vector set was built by (SPEC §vectors-build): changes with
# any expected result or the case format.
SPEC_VERSION = "0.1.0"
CASE_FORMAT = "feste-vector/1"
INDEX_FORMAT = "feste-vector-index/1"
PROTOCOL = 1

HERE = Path(__file__).resolve().parent
CASE_SCHEMA = HERE / "case.schema.json"
PROTOCOL_SCHEMA = HERE / "protocol.schema.json"

# SPEC §error-codes: every error code a case may expect or an adapter may reply.
ERROR_CODES = (
    "config.invalid",
    "input.token-out-of-range", "input.sequence-too-long", "input.non-finite-param", "input.invalid",
    "tokenizer.invalid-json",
    "checkpoint.bad-magic", "checkpoint.bad-version", "checkpoint.truncated", "checkpoint.bad-config",
    "checkpoint.bad-shape", "checkpoint.bad-flag", "checkpoint.bad-optimizer", "checkpoint.bad-tokenizer",
    "checkpoint.bad-metadata", "checkpoint.bad-value", "checkpoint.trailing-bytes",
)
