"""The PyTorch peer (SPEC §step-benchmark): the same model written the way a
PyTorch user would write it, as the reference point for `fast`'s step time.

`nn.Module`s with `nn.Linear`, `nn.LayerNorm`, `nn.Embedding`,
`F.scaled_dot_product_attention(is_causal=True)` and `nn.GELU('tanh')`;
`F.cross_entropy`; `torch.nn.utils.clip_grad_norm_`; `torch.optim.AdamW`
with decay on the 2-D weights only. Same shapes, the same initial values as
`reference.init_params(config, seed=0)` (copied in, `nn.Linear` storing
[out, in]), the same batch and hyper-parameters as harness.TrainStep (benchmarks/lib), and
the same thread count as the implementation under test
(`torch.set_num_threads`). Eager mode, PyTorch's defaults otherwise: what a
user gets without tuning.

torch is optional (`pip install -e '.[torch]'`, which pins torch==2.13.0);
`available()` says why it cannot run when it is missing.

Dimension legend: B batch, T sequence, C n_embd, NH heads, hs head size, V vocab.
"""
from __future__ import annotations

import numpy as np

from .harness import LEARNING_RATE, MAX_NORM, PARAM_SEED, fixed_batch

PEERS = ("torch",)
ADAMW = dict(betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)  # SPEC §optimiser defaults


def available() -> str | None:
    """None when the torch peer can run, else the reason it cannot."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        return (f"torch is not installed ({exc}); the PyTorch peer needs the optional extra: "
                "pip install -e '.[torch]' (torch==2.13.0)")
    return None


def _modules():
    """The model's classes (defined here so that importing this file never imports torch)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class CausalSelfAttention(nn.Module):
        def __init__(self, C, NH):
            super().__init__()
            self.NH = NH
            self.q, self.k, self.v, self.out = (nn.Linear(C, C) for _ in range(4))

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = (p(x).view(B, T, self.NH, C // self.NH).transpose(1, 2)
                       for p in (self.q, self.k, self.v))  # (B, NH, T, hs)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, NH, T, hs)
            return self.out(y.transpose(1, 2).contiguous().view(B, T, C))

    class Block(nn.Module):
        def __init__(self, C, NH):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(C, eps=1e-5), nn.LayerNorm(C, eps=1e-5)
            self.attn = CausalSelfAttention(C, NH)
            self.fc1, self.fc2 = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
            self.gelu = nn.GELU(approximate="tanh")

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.fc2(self.gelu(self.fc1(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self, config):
            super().__init__()
            C, V = config.n_embd, config.vocab_size
            self.token_embedding = nn.Embedding(V, C)
            self.position_embedding = nn.Embedding(config.block_size, C)
            self.blocks = nn.ModuleList(Block(C, config.n_heads) for _ in range(config.n_layers))
            self.ln_final = nn.LayerNorm(C, eps=1e-5)
            self.output = nn.Linear(C, V, bias=False)

        def forward(self, idx, targets):
            T = idx.shape[1]
            pos = torch.arange(T, device=idx.device)
            x = self.token_embedding(idx) + self.position_embedding(pos)  # (B, T, C)
            for block in self.blocks:
                x = block(x)
            logits = self.output(self.ln_final(x))  # (B, T, V)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
            return logits, loss

    return GPT


# our parameter names -> the module's (blocks.i.<ours> -> blocks.i.<theirs>)
_BLOCK_NAMES = {
    "ln1.gamma": "ln1.weight", "ln1.beta": "ln1.bias", "ln2.gamma": "ln2.weight", "ln2.beta": "ln2.bias",
    **{f"{p}.{w}": f"attn.{p}.{w}" for p in ("q", "k", "v", "out") for w in ("weight", "bias")},
    **{f"{p}.{w}": f"{p}.{w}" for p in ("fc1", "fc2") for w in ("weight", "bias")},
}
_TOP_NAMES = {"token_embedding": "token_embedding.weight", "position_embedding": "position_embedding.weight",
              "ln_final.gamma": "ln_final.weight", "ln_final.beta": "ln_final.bias",
              "output_weight": "output.weight"}


def module_name(name: str) -> str:
    """Our parameter name (SPEC §checkpoint) -> the torch module's state_dict key."""
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    _, i, rest = name.split(".", 2)
    return f"blocks.{i}.{_BLOCK_NAMES[rest]}"


def build_model(config, params):
    """The torch model holding `params` (a reference Params): nn.Linear weights
    are [out, in], ours [in, out], so 2-D weights other than embeddings are transposed."""
    import torch

    model = _modules()(config)
    state = {}
    for name, value in params.items():
        arr = np.asarray(value, dtype=np.float32)
        if arr.ndim == 2 and not name.endswith("embedding"):
            arr = arr.T
        state[module_name(name)] = torch.from_numpy(np.ascontiguousarray(arr))
    model.load_state_dict(state, strict=True)
    return model


class TorchTrainStep:
    """One training step of the PyTorch peer on harness.TrainStep's batch;
    call it to run one step (forward, loss, backward, clip, AdamW)."""

    def __init__(self, config, B: int, T: int, threads: int, warmup: int = 1):
        import torch

        import reference

        if T > config.block_size:
            raise ValueError(f"T={T} exceeds block_size={config.block_size}")
        torch.set_num_threads(int(threads))
        self.threads = torch.get_num_threads()
        self.torch_version = torch.__version__
        # what the peer's matmuls run on (torch links its BLAS statically: threadpoolctl cannot see it)
        self.backend = {"mkl": torch.backends.mkl.is_available(), "mkldnn": torch.backends.mkldnn.is_available(),
                        "cpu_capability": torch.backends.cpu.get_cpu_capability()}
        self.model = build_model(config, reference.init_params(config, seed=PARAM_SEED))
        decay = [p for p in self.model.parameters() if p.ndim == 2 and p is not self.model.token_embedding.weight
                 and p is not self.model.position_embedding.weight]
        ids = {id(p) for p in decay}
        no_decay = [p for p in self.model.parameters() if id(p) not in ids]
        self.optimizer = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}],
                                           lr=LEARNING_RATE, **ADAMW)
        x, y = fixed_batch(config.vocab_size, B, T)
        self.x, self.y = torch.from_numpy(x), torch.from_numpy(y)
        self.last_loss = None
        for _ in range(warmup):
            self()

    def __call__(self) -> float:
        import torch

        _logits, loss = self.model(self.x, self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), MAX_NORM)
        self.optimizer.step()
        self.last_loss = float(loss.detach())
        return self.last_loss
