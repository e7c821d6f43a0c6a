"""Autoregressive generation: greedy, temperature and top-k sampling (SPEC §training).

Dimension legend: V vocab, N sequence length so far, block_size max context.

The reference recomputes the full forward over the last block_size tokens
for every new token (no KV cache: clarity first; `fast` adds one). How a
token is drawn is specified exactly so another implementation reproduces the
same sequence from the same seed:

    temperature == 0:  argmax of the float32 logits (lowest id among equal maxima); no draw
    otherwise:         z = float64(logits) / float64(temperature)
                       top_k: keep the k largest logits, ties broken by lower id; others -inf
                       w = exp(z - max(z))                 (float64, masked -> 0)
                       c = cumulative sum of w, in id order (sequential float64)
                       u = rng.random()                    (rng = numpy default_rng(seed), one draw per token)
                       token = the first id with c[id] > u * c[V-1]
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .model import forward
from .params import Params


def check_generate_args(params, prompt_ids, n_tokens, temperature, top_k, seed) -> np.ndarray:
    """Validate generate's arguments (ValueError naming the argument); returns
    the prompt as int64 [N], truncated to the last block_size tokens (with a warning)."""
    if not isinstance(params, Params):
        raise ValueError(f"params must be a Params, got {type(params).__name__}")
    config = params.config
    prompt = np.asarray(prompt_ids)
    if prompt.ndim != 1 or prompt.size == 0:
        raise ValueError(f"prompt_ids must be a non-empty 1-D sequence of token ids, got shape {prompt.shape}")
    if prompt.dtype.kind not in "iu":
        raise ValueError(f"prompt_ids must hold integers, got dtype {prompt.dtype}")
    lo, hi = int(prompt.min()), int(prompt.max())
    if lo < 0 or hi >= config.vocab_size:
        bad = lo if lo < 0 else hi
        raise ValueError(f"prompt_ids contains id {bad}, outside [0, {config.vocab_size})")
    if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)) or n_tokens < 0:
        raise ValueError(f"n_tokens must be a non-negative int, got {n_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.floating)) \
            or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer))
                              or not 1 <= top_k <= config.vocab_size):
        raise ValueError(f"top_k must be None or an int in [1, vocab_size={config.vocab_size}], got {top_k!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    prompt = prompt.astype(np.int64)
    if prompt.size > config.block_size:
        warnings.warn(f"prompt has {prompt.size} tokens, more than block_size={config.block_size}: "
                      f"keeping only its last {config.block_size} tokens", stacklevel=3)
        prompt = prompt[-config.block_size:]
    return prompt


def sample_token(logits: np.ndarray, temperature: float, top_k: int | None, rng: np.random.Generator) -> int:
    """Pick the next id from the logits [V] of the last position (module docstring)."""
    if not np.all(np.isfinite(logits)):
        raise ValueError("the model produced non-finite logits; cannot sample")
    if temperature == 0:
        return int(np.argmax(logits))  # first index of the maximum
    z = logits.astype(np.float64) / np.float64(temperature)  # [V]
    if top_k is not None and top_k < z.size:
        order = np.argsort(-logits, kind="stable")  # [V] by logit descending, ties by lower id
        z[order[top_k:]] = -np.inf
    w = np.exp(z - z.max())  # [V], masked entries exp(-inf) = 0
    c = np.cumsum(w)  # [V], sequential float64
    u = rng.random()
    return int(np.searchsorted(c, u * c[-1], side="right"))  # first id with c[id] > u * total


def generate(params, prompt_ids, n_tokens, temperature=1.0, top_k=None, seed=0) -> np.ndarray:
    """The (possibly truncated) prompt followed by `n_tokens` new ids, int64 [N + n_tokens].

    Each new token sees at most the last block_size tokens. A prompt longer than
    block_size is cut to its last block_size tokens, with a UserWarning."""
    prompt = check_generate_args(params, prompt_ids, n_tokens, temperature, top_k, seed)
    block_size = params.config.block_size
    rng = np.random.default_rng(seed)
    ids = np.empty(prompt.size + int(n_tokens), dtype=np.int64)  # [N + n_tokens]
    ids[:prompt.size] = prompt
    for n in range(prompt.size, ids.size):
        context = ids[max(0, n - block_size):n]  # [<= block_size]
        logits, _, _ = forward(params, context[None, :])  # [1, T, V]
        ids[n] = sample_token(logits[0, -1], float(temperature), top_k, rng)
    return ids
