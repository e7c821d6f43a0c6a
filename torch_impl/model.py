"""The GPT-2 model on torch tensors: forward, and backward by autograd (SPEC §model).

Dimension legend: B batch, T time, C n_embd, V vocab, L n_layers, NH heads.

    x = wte[tokens] + wpe[:T]                       # (B, T, C)
    for each of L blocks: x = block(x)              # pre-LayerNorm, §forward
    logits = layernorm_f(x) @ W_out                 # (B, T, V), no bias
    loss = cross_entropy(logits, targets)           # mean over B*T

The parameters are one leaf tensor, a torch copy of the `Params` buffer,
carved into named views by the parameter table; autograd's gradient of that
leaf is the flat gradient buffer, returned as a `Params` of the same table.
"""
from __future__ import annotations

import torch

from reference.dropout import (ATTENTION, ATTENTION_OUTPUT, EMBEDDING, MLP_OUTPUT, check_dropout_key, dropout_mask,
                               dropout_scale)
from reference.model import check_accumulate_args, check_backward_inputs, check_inputs, check_params
from reference.params import BLOCK_TENSORS, Params

from ._autograd import tensor_of, to_numpy, token_tensor, view_of
from .layers import attention, drop, embedding, gelu, layernorm, linear
from .loss import seed, summed_cross_entropy

GRAPH = "torch_graph"  # the cache key that marks a torch_impl forward's cache


def param_views(flat: torch.Tensor, params: Params) -> dict[str, torch.Tensor]:
    """Named views of the flat parameter tensor, one per table row (one split
    of the buffer in table order, then a reshape of the matrices: few
    operations, as each one costs autograd a node)."""
    pieces = torch.split(flat, [spec.size for spec in params.table])
    return {spec.name: piece if len(spec.shape) == 1 else piece.view(spec.shape)
            for spec, piece in zip(params.table, pieces)}


class DropoutMasks:
    """The masks and scale of one training step's dropout (SPEC §dropout): the
    reference's masks (integer arithmetic, specified bit by bit) as tensors."""

    def __init__(self, key, p: float, dtype):
        self.key, self.p = key, p
        self.scale = float(dropout_scale(p, dtype))  # an F value

    def keep(self, layer: int, site: int, shape) -> torch.Tensor:
        key = self.key
        return torch.from_numpy(dropout_mask(key.seed, key.step, layer, site, shape, self.p, key.row_offset))


def block(x: torch.Tensor, w: dict[str, torch.Tensor], n_heads: int, masks: DropoutMasks | None = None,
          layer: int = 0) -> torch.Tensor:
    """x1 = x + drop(attention(ln1(x)) @ Wout + bout);  out = x1 + drop(gelu(ln2(x1) @ W1 + b1) @ W2 + b2),
    the attention probabilities dropped too, with `masks` (SPEC §dropout; without, drop(x) = x).
    `w` maps block-local names ("ln1.gamma", "q.weight", ...) to tensors."""
    B, T, C = x.shape
    keep_att, keep_out, keep_mlp = (None, None, None) if masks is None else (
        masks.keep(layer, ATTENTION, (B, n_heads, T, T)), masks.keep(layer, ATTENTION_OUTPUT, (B, T, C)),
        masks.keep(layer, MLP_OUTPUT, (B, T, C)))
    scale = None if masks is None else masks.scale
    h1 = layernorm(x, w["ln1.gamma"], w["ln1.beta"])  # (B, T, C)
    q = linear(h1, w["q.weight"], w["q.bias"])  # (B, T, C)
    k = linear(h1, w["k.weight"], w["k.bias"])  # (B, T, C)
    v = linear(h1, w["v.weight"], w["v.bias"])  # (B, T, C)
    y = attention(q, k, v, n_heads, keep_att, scale)  # (B, T, C)
    x1 = x + drop(linear(y, w["out.weight"], w["out.bias"]), keep_out, scale)  # (B, T, C)
    h2 = layernorm(x1, w["ln2.gamma"], w["ln2.beta"])  # (B, T, C)
    f = linear(h2, w["fc1.weight"], w["fc1.bias"])  # (B, T, 4C)
    return x1 + drop(linear(gelu(f), w["fc2.weight"], w["fc2.bias"]), keep_mlp, scale)  # (B, T, C)


def final_hidden(w: dict[str, torch.Tensor], tokens: torch.Tensor, config, masks: DropoutMasks | None = None):
    """The final LayerNorm's output [B, T, C] (the input of the output projection)."""
    x = embedding(tokens, w["token_embedding"], w["position_embedding"])  # (B, T, C)
    if masks is not None:
        x = drop(x, masks.keep(0, EMBEDDING, tuple(x.shape)), masks.scale)  # (B, T, C)
    for i in range(config.n_layers):
        x = block(x, {s: w[f"blocks.{i}.{s}"] for s in BLOCK_TENSORS}, config.n_heads, masks, i)  # (B, T, C)
    return layernorm(x, w["ln_final.gamma"], w["ln_final.beta"])  # (B, T, C)


def forward(params, tokens, targets=None, dropout=None):
    """Logits [B, T, V] in the dtype of `params`, the mean cross-entropy loss
    (a float, or None without `targets`) and an opaque cache for `backward`
    (holding the autograd graph; without targets no graph is built).
    dropout: None, or the DropoutKey of a training step: masks are drawn
    only when config.dropout_rate > 0 (SPEC §dropout)."""
    check_params(params)
    config = params.config
    tokens, targets = check_inputs(config, tokens, targets)
    key = check_dropout_key(dropout)
    masks = None if key is None or config.dropout_rate == 0.0 else DropoutMasks(key, config.dropout_rate, params.dtype)
    training = targets is not None
    flat = tensor_of(params.data).requires_grad_(training)  # [P], a copy of params.data
    with torch.set_grad_enabled(training):
        w = param_views(flat, params)
        logits = linear(final_hidden(w, token_tensor(tokens), config, masks), w["output_weight"])  # (B, T, V)
        total = summed_cross_entropy(logits, token_tensor(targets)) if training else None
    cache = {"config": config, "dtype": params.dtype, GRAPH: flat, "loss": total, "positions": tokens.size}
    return to_numpy(logits), None if total is None else total.item() / tokens.size, cache


def backward(params, cache, accumulate=None, mean_over=None):
    """Gradients of the mean loss with respect to every parameter, by autograd:
    a `Params` of the same config and dtype as `params`. The graph is kept,
    so backward may run twice on one cache.

    mean_over: the batch is part of one whose loss is the mean over this many
    positions (default its own B*T): autograd is seeded with 1/mean_over.
    accumulate: a gradient Params to add the gradients into (elementwise, one
    rounding each; returned), as micro-batches do (SPEC §backward, §micro-batches)."""
    check_backward_inputs(params, cache, owner="torch_impl.forward", marker=GRAPH)
    n = check_accumulate_args(params, cache["positions"], accumulate, mean_over)
    (grad,) = torch.autograd.grad(cache["loss"], cache[GRAPH], grad_outputs=seed(n), retain_graph=True)  # [P]
    if accumulate is None:
        return Params(params.config, to_numpy(grad))
    view_of(accumulate.data).add_(grad)  # A = A + g: alpha 1, one rounding (optim.py's note on add)
    return accumulate
