"""The PyTorch peer (benchmarks/lib/torch_peer.py) is the same model: at the
benchmark's init and batch its logits, loss and every gradient agree with
`reference` to SPEC §tolerances's tolerances, and its AdamW decays exactly the
tensors SPEC §optimiser decays. Skipped with the reason without torch."""
from __future__ import annotations

import numpy as np
import pytest

import reference
from benchmarks.lib import torch_peer
from benchmarks.lib.harness import PARAM_SEED, fixed_batch
from conformance import tolerances as tol
from conformance.assertions import assert_rel_norm, assert_scaled_max

torch = pytest.importorskip("torch", reason="torch is not installed: the PyTorch peer needs pip install -e '.[torch]'")


@pytest.mark.parametrize("preset_name,B,T", [("tiny", 3, 37)])
def test_peer_is_the_same_model(preset_name, B, T):
    """Away from init (biases, gammas perturbed) at a T no block size divides."""
    config = reference.preset(preset_name)
    params = reference.init_params(config, seed=PARAM_SEED)
    rng = np.random.default_rng(7)
    for name, value in params.items():
        if value.ndim == 1:  # biases 0 and gammas 1 at init would hide a dropped term
            value += rng.standard_normal(value.shape).astype(np.float32) * np.float32(0.1)
    x, y = fixed_batch(config.vocab_size, B, T)
    logits, loss, cache = reference.forward(params, x, y)
    grads = reference.backward(params, cache)

    model = torch_peer.build_model(config, params)
    t_logits, t_loss = model(torch.from_numpy(x), torch.from_numpy(y))
    t_loss.backward()
    context = {"impl": "torch peer", "preset": preset_name, "B": B, "T": T}
    assert_scaled_max("logits", t_logits.detach().numpy(), logits, tol.LOGITS_RTOL, context)
    assert abs(float(t_loss.detach()) - float(loss)) <= tol.LOSS_RTOL * abs(float(loss))
    named = dict(model.named_parameters())
    for name, want in grads.items():
        got = named[torch_peer.module_name(name)].grad.numpy()
        if want.ndim == 2 and not name.endswith("embedding"):
            got = got.T  # nn.Linear stores [out, in]
        scale = {}
        if name.endswith(".k.bias"):  # zero in exact arithmetic: measured on k.weight's scale (SPEC §tolerances)
            weight = name.replace(".bias", ".weight")
            scale = dict(scale=float(np.linalg.norm(grads[weight])), scale_name=f"||{weight}||")
        assert_rel_norm(name, got, want, tol.GRAD_REL_NORM, context, **scale)


def test_peer_decays_what_spec_decays():
    config = reference.preset("tiny")
    step = torch_peer.TorchTrainStep(config, 2, 8, threads=1, warmup=0)
    decayed_group, plain_group = step.optimizer.param_groups
    assert decayed_group["weight_decay"] == 0.1 and plain_group["weight_decay"] == 0.0
    assert decayed_group["betas"] == (0.9, 0.95) and decayed_group["eps"] == 1e-8
    by_id = {id(p): n for n, p in step.model.named_parameters()}
    got = {by_id[id(p)] for p in decayed_group["params"]}
    want = {torch_peer.module_name(spec.name) for spec in reference.param_table(config) if spec.decayed}
    assert got == want
    assert np.isfinite(step()) and step.threads == 1
