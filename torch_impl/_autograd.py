"""The NumPy/torch boundary and the forward/backward pair through autograd.

Every public function of `torch_impl` takes and returns NumPy arrays (the
contract, SPEC §contract). What it computes on is a torch-allocated copy of
its inputs (`tensor_of`): torch aligns its buffers to 64 bytes, so which
code path MKL takes depends on the shapes alone, never on where the caller's
arrays happen to sit (SPEC §tolerances, (D)); the caller's arrays are never
written. The optimiser and `backward(accumulate=...)`, which work in place
on the caller's buffers by contract, use `view_of` instead.

A forward runs its torch function on leaf tensors that require grad and
keeps the graph in the cache; the matching backward asks autograd for the
gradients of the inputs, with `dout` as the upstream gradient. The graph is
retained, so a backward may run twice on one cache (SPEC §backward).
"""
from __future__ import annotations

import numpy as np
import torch


def tensor_of(a: np.ndarray) -> torch.Tensor:
    """A contiguous, torch-allocated (64-byte aligned) copy of `a`."""
    source = torch.from_numpy(a if a.flags.writeable and all(s >= 0 for s in a.strides) else np.array(a))
    return source.clone(memory_format=torch.contiguous_format)


def view_of(a: np.ndarray) -> torch.Tensor:
    """A tensor viewing `a`'s memory, for updating it in place."""
    if not a.flags.writeable:
        raise ValueError("the buffer to update in place is read-only")
    return torch.from_numpy(a)


def token_tensor(tokens: np.ndarray) -> torch.Tensor:
    """Checked integer token ids (any integer dtype) as int64, for indexing."""
    return torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A detached tensor's values as a NumPy array (the tensor's own memory,
    which nothing else holds: the caller gets a new array)."""
    return t.detach().numpy()


def pair_forward(fn, arrays: tuple, *args):
    """Run `fn(*tensors, *args)` on leaf tensors copied from `arrays` (None
    stays None) with autograd on. Returns (output as NumPy, cache for pair_backward)."""
    leaves = tuple(None if a is None else tensor_of(a).requires_grad_(True) for a in arrays)
    with torch.enable_grad():
        out = fn(*leaves, *args)
    return to_numpy(out), (out, leaves)


def pair_backward(dout: np.ndarray, cache) -> tuple:
    """Gradients of the forward's inputs, in their order (None where the input
    was None), given dL/dout = `dout` (copied: autograd may hand its
    grad_outputs buffer back or accumulate into it)."""
    out, leaves = cache
    wanted = [leaf for leaf in leaves if leaf is not None]
    upstream = tensor_of(np.asarray(dout)).to(out.dtype)
    grads = iter(torch.autograd.grad(out, wanted, grad_outputs=upstream, retain_graph=True))
    return tuple(None if leaf is None else to_numpy(next(grads)) for leaf in leaves)
