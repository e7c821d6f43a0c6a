"""Generation through torch_impl's own forward (SPEC §generation).

Dimension legend: V vocab, N sequence length so far, block_size max context.

Each new token runs the model over the last block_size tokens (no key/value
cache: the point of this module is a second, independent route through the
model, not speed) and draws it with the SPEC's rule, `reference.generate.sample_token`
(greedy argmax of the logits, or the float64 cumulative-sum draw from
`default_rng(seed)`): the draw is specified operation by operation, so it is
written once.
"""
from __future__ import annotations

import numpy as np
import torch

from reference.generate import check_generate_args, sample_token
from reference.model import check_params

from ._autograd import tensor_of, to_numpy, token_tensor
from .model import final_hidden, param_views


def generate(params, prompt_ids, n_tokens, temperature=1.0, top_k=None, seed=0) -> np.ndarray:
    """The (possibly truncated) prompt followed by `n_tokens` new ids, int64 [N + n_tokens]."""
    prompt = check_generate_args(params, prompt_ids, n_tokens, temperature, top_k, seed)
    check_params(params)
    config = params.config
    rng = np.random.default_rng(seed)
    ids = np.empty(prompt.size + int(n_tokens), dtype=np.int64)  # [N + n_tokens]
    ids[:prompt.size] = prompt
    with torch.inference_mode():
        w = param_views(tensor_of(params.data), params)
        for n in range(prompt.size, ids.size):
            context = ids[max(0, n - config.block_size):n]  # [<= block_size]
            h = final_hidden(w, token_tensor(context[None, :]), config)  # (1, T, C)
            logits = h[0, -1] @ w["output_weight"]  # (V,) the last position only
            ids[n] = sample_token(to_numpy(logits), float(temperature), top_k, rng)
    return ids
