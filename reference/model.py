"""The GPT-2 model: forward and backward over a batch (SPEC §model).

Dimension legend: B batch, T time, C n_embd, V vocab, L n_layers, NH heads.

    x = wte[tokens] + wpe[:T]                       # (B, T, C)
    for each of L blocks: x = block(x)              # pre-LayerNorm, §forward
(with a DropoutKey and p > 0, dropout at the four sites of §dropout)
    logits = layernorm_f(x) @ W_out                 # (B, T, V), no bias
    loss = cross_entropy(logits, targets)           # mean over B*T
"""
from __future__ import annotations

import numpy as np

from .layers import (
    FLOAT_DTYPES,
    block_backward,
    block_forward,
    check_token_ids,
    embedding_backward,
    embedding_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
)
from .dropout import (ATTENTION, ATTENTION_OUTPUT, EMBEDDING, MLP_OUTPUT, check_dropout_key, dropout_backward,
                      dropout_forward, dropout_mask, dropout_scale)
from .loss import cross_entropy_backward_over, cross_entropy_forward
from .params import BLOCK_TENSORS, Params


def check_params(params, name: str = "params") -> Params:
    """`params` must be a float32/float64 `Params` whose every value is finite;
    otherwise ValueError naming the tensor, the index and the value."""
    if not isinstance(params, Params):
        raise ValueError(f"{name} must be a reference.Params, got {type(params).__name__}")
    if params.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name} must be float32 or float64, got dtype {params.dtype}")
    # fast path: a float64 sum of float32 values is finite iff every value is
    # (float64 data can overflow the sum; then the per-tensor scan decides)
    if np.isfinite(params.data.sum(dtype=np.float64)):
        return params
    for tensor_name, view in params.items():
        bad = ~np.isfinite(view)
        if bad.any():
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name}[{tensor_name!r}] holds the non-finite value {view[index]!r} at index {index}")
    return params


def check_inputs(config, tokens, targets=None):
    """The batch checks every `forward` makes (SPEC §model): integer token
    ids in [0, V) of shape [B, T] with 1 <= T <= block_size, and targets of the
    same shape. Returns the checked (tokens, targets)."""
    tokens = check_token_ids("tokens", tokens, config.vocab_size)
    B, T = tokens.shape
    if T > config.block_size:
        raise ValueError(f"tokens has T={T} positions, more than block_size={config.block_size}")
    if targets is not None:
        targets = check_token_ids("targets", targets, config.vocab_size)
        if targets.shape != tokens.shape:
            raise ValueError(f"targets shape {targets.shape} must equal tokens shape {tokens.shape}")
    return tokens, targets


def _block_weights(params: Params, i: int) -> dict[str, np.ndarray]:
    return {suffix: params[f"blocks.{i}.{suffix}"] for suffix in BLOCK_TENSORS}


def forward(params, tokens, targets=None, dropout=None):
    """Logits [B, T, V] in the dtype of `params`, the mean cross-entropy loss
    (a float, or None without `targets`) and an opaque cache for `backward`.

    tokens, targets: integer arrays [B, T], ids in [0, V), 1 <= T <= block_size.
    dropout: None (no dropout: evaluation, generation) or the DropoutKey of a
    training step; masks are drawn only when config.dropout_rate > 0 (SPEC §dropout)."""
    check_params(params)
    config = params.config
    tokens, targets = check_inputs(config, tokens, targets)
    key = check_dropout_key(dropout)
    p = config.dropout_rate
    if key is None or p == 0.0:
        key = None  # p = 0 is the model without dropout, bit for bit
    B, T = tokens.shape
    C, NH = config.n_embd, config.n_heads

    def mask(layer, site, shape):
        return dropout_mask(key.seed, key.step, layer, site, shape, p, key.row_offset)

    scale = dropout_scale(p, params.dtype) if key is not None else None
    x, emb_cache = embedding_forward(tokens, params["token_embedding"], params["position_embedding"])  # (B, T, C)
    keep_emb = None
    if key is not None:
        keep_emb = mask(0, EMBEDDING, (B, T, C))  # (B, T, C)
        x = dropout_forward(x, keep_emb, scale)
    block_caches = []
    for i in range(config.n_layers):
        masks = None
        if key is not None:
            masks = (mask(i, ATTENTION, (B, NH, T, T)), mask(i, ATTENTION_OUTPUT, (B, T, C)),
                     mask(i, MLP_OUTPUT, (B, T, C)))
        x, block_cache = block_forward(x, _block_weights(params, i), NH, masks, scale)  # (B, T, C)
        block_caches.append(block_cache)
    h, lnf_cache = layernorm_forward(x, params["ln_final.gamma"], params["ln_final.beta"])  # (B, T, C)
    logits, head_cache = linear_forward(h, params["output_weight"])  # (B, T, V)

    loss, loss_cache = None, None
    if targets is not None:
        loss, loss_cache = cross_entropy_forward(logits, targets)
    cache = {
        "config": config,
        "dtype": params.dtype,
        "embedding": emb_cache,
        "embedding_dropout": (keep_emb, scale),
        "blocks": block_caches,
        "ln_final": lnf_cache,
        "head": head_cache,
        "loss": loss_cache,
    }
    return logits, loss, cache


def check_backward_inputs(params, cache, owner: str = "forward", marker: str = "loss") -> None:
    """`cache` must come from `owner` (it holds the key `marker`), with a loss
    (forward was given targets), and `params` must match its config and dtype."""
    if not isinstance(cache, dict) or marker not in cache:
        raise ValueError(f"cache must be the cache returned by {owner}")
    if cache["loss"] is None:
        raise ValueError("cache has no loss: call forward(params, tokens, targets) with targets before backward")
    if not isinstance(params, Params):
        raise ValueError(f"params must be a reference.Params, got {type(params).__name__}")
    if params.config != cache["config"] or params.dtype != cache["dtype"]:
        raise ValueError(f"params ({params.config}, {params.dtype}) do not match the forward's "
                         f"({cache['config']}, {cache['dtype']})")


def check_accumulate_args(params, batch_positions: int, accumulate, mean_over):
    """The micro-batch arguments of `backward` (SPEC §backward, §errors):
    `mean_over` None or an int >= the batch's B*T positions; `accumulate` None
    or a gradient Params of the params' config and dtype, not the params
    themselves. Returns the divisor of dlogits."""
    if mean_over is None:
        n = batch_positions
    elif isinstance(mean_over, bool) or not isinstance(mean_over, (int, np.integer)):
        raise ValueError(f"mean_over must be an integer, got {mean_over!r}")
    elif mean_over < batch_positions:
        raise ValueError(f"mean_over={mean_over} is below this batch's B*T = {batch_positions} positions")
    else:
        n = int(mean_over)
    if accumulate is not None:
        if not isinstance(accumulate, Params):
            raise ValueError(f"accumulate must be a reference.Params of gradients, got {type(accumulate).__name__}")
        if accumulate is params or accumulate.data is params.data:
            raise ValueError("accumulate must be a gradient buffer, not the params themselves")
        if accumulate.config != params.config or accumulate.dtype != params.dtype:
            raise ValueError(f"accumulate ({accumulate.config}, {accumulate.dtype}) does not match the params "
                             f"({params.config}, {params.dtype})")
    return n


def backward(params, cache, accumulate=None, mean_over=None):
    """Gradients of the mean loss with respect to every parameter: a `Params`
    of the same config and dtype as `params`, laid out by the same table.

    mean_over: the batch is part of one whose loss is the mean over this many
    positions (default its own B*T): dlogits = (softmax - onehot) / mean_over.
    accumulate: a gradient Params to add the gradients into (elementwise, one
    rounding each; returned), as micro-batches do (SPEC §micro-batches)."""
    check_backward_inputs(params, cache)
    probs, _ = cache["loss"]
    B, T, _ = probs.shape
    n = check_accumulate_args(params, B * T, accumulate, mean_over)
    config = params.config
    grads = Params(config, dtype=params.dtype)

    dlogits = cross_entropy_backward_over(cache["loss"], n)  # (B, T, V)
    dh, grads["output_weight"], _ = linear_backward(dlogits, cache["head"])  # (B, T, C)
    dx, grads["ln_final.gamma"], grads["ln_final.beta"] = layernorm_backward(dh, cache["ln_final"])
    for i in reversed(range(config.n_layers)):
        dx, block_grads = block_backward(dx, cache["blocks"][i])  # (B, T, C)
        for suffix, g in block_grads.items():
            grads[f"blocks.{i}.{suffix}"] = g
        del block_grads  # copied into the buffer: free before the next block's backward
    # x0 = drop(wte[tokens] + wpe[:T])
    keep_emb, scale = cache["embedding_dropout"]
    if keep_emb is not None:
        dx = dropout_backward(dx, keep_emb, scale)
    grads["token_embedding"], grads["position_embedding"] = embedding_backward(dx, cache["embedding"])
    if accumulate is None:
        return grads
    accumulate.data += grads.data  # A = A + g, elementwise in the dtype
    return accumulate
