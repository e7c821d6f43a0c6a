"""The catalogue: single-defect variants of `reference`, each of which the
conformance suite must catch (conformance/test_mutation.py).

A mutant replaces one exact snippet of one file of the `reference` package.
The snippet must occur exactly once in the current source: when the code
changes under a mutant, the fast catalogue test fails and the entry has to be
updated, so the catalogue cannot silently rot. `tests` names the conformance
files run against the mutant (all of them must exist): the files that own the
behaviour, plus test_agreement.py where agreement applies. Keep mutants to
plausible mistakes (the kind a port would make), not syntax damage: a mutant
that breaks imports counts as an error, not as caught.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    id: str  # short kebab-case name, used in test ids
    file: str  # path inside the reference package, e.g. "optim.py"
    original: str  # exact snippet of the current source (occurs exactly once)
    replacement: str  # the defect
    description: str  # what is wrong, in the words of the SPEC
    tests: tuple[str, ...]  # conformance test files to run against the mutant


MUTANTS: list[Mutant] = [
    # --- optimiser, clipping, schedule (SPEC section 3) ----------------------
    Mutant(
        "adamw-no-bias-correction", "optim.py",
        "    bc1 = F(1.0 - math.pow(float(b1), t))\n    bc2 = F(1.0 - math.pow(float(b2), t))\n",
        "    bc1 = F(1.0)\n    bc2 = F(1.0)\n",
        "AdamW without bias correction (mhat = m, vhat = v)",
        ("test_optim.py",),
    ),
    Mutant(
        "adamw-decay-after-update", "optim.py",
        "    p[mask] = p[mask] * decay  # [P_decayed]\n"
        "    m[...] = b1 * m + omb1 * g  # [P]\n"
        "    v[...] = b2 * v + omb2 * g * g  # [P]\n"
        "    mhat = m / bc1  # [P]\n"
        "    vhat = v / bc2  # [P]\n"
        "    p[...] = p - lr_f * mhat / (np.sqrt(vhat) + eps_f)  # [P]\n",
        "    m[...] = b1 * m + omb1 * g  # [P]\n"
        "    v[...] = b2 * v + omb2 * g * g  # [P]\n"
        "    mhat = m / bc1  # [P]\n"
        "    vhat = v / bc2  # [P]\n"
        "    p[...] = p - lr_f * mhat / (np.sqrt(vhat) + eps_f)  # [P]\n"
        "    p[mask] = p[mask] * decay  # [P_decayed]\n",
        "weight decay applied after the Adam update instead of before it",
        ("test_optim.py",),
    ),
    Mutant(
        "adamw-decay-everything", "optim.py",
        "    p[mask] = p[mask] * decay  # [P_decayed]\n",
        "    p[...] = p * decay  # [P]\n",
        "weight decay applied to biases, LayerNorm and embeddings too",
        ("test_optim.py",),
    ),
    Mutant(
        "adamw-eps-inside-sqrt", "optim.py",
        "lr_f * mhat / (np.sqrt(vhat) + eps_f)",
        "lr_f * mhat / np.sqrt(vhat + eps_f)",
        "AdamW eps added under the square root instead of after it",
        ("test_optim.py",),
    ),
    Mutant(
        "adamw-betas-swapped", "optim.py",
        "    m[...] = b1 * m + omb1 * g  # [P]\n    v[...] = b2 * v + omb2 * g * g  # [P]\n",
        "    m[...] = b2 * m + omb2 * g  # [P]\n    v[...] = b1 * v + omb1 * g * g  # [P]\n",
        "beta1 used for the second moment and beta2 for the first",
        ("test_optim.py",),
    ),
    Mutant(
        "clip-scale-inverted", "optim.py",
        "        scale = grads.dtype.type(max_norm / norm)\n",
        "        scale = grads.dtype.type(norm / max_norm)\n",
        "gradient clipping multiplies by norm / max_norm instead of max_norm / norm",
        ("test_optim.py",),
    ),
    Mutant(
        "grad-norm-float32", "optim.py",
        "    g = grads.data.astype(np.float64)  # [P]\n",
        "    g = grads.data  # [P]\n",
        "gradient norm accumulated in float32 instead of float64",
        ("test_optim.py",),
    ),
    Mutant(
        "lr-warmup-off-by-one", "optim.py",
        "        return base_lr * step / warmup_steps\n",
        "        return base_lr * (step + 1) / warmup_steps\n",
        "linear warmup starts at base_lr / warmup instead of 0 at step 0",
        ("test_optim.py",),
    ),
    Mutant(
        "lr-cosine-full-period", "optim.py",
        "(1.0 + math.cos(math.pi * progress))",
        "(1.0 + math.cos(2.0 * math.pi * progress))",
        "cosine decay over a full period (comes back up) instead of a half period",
        ("test_optim.py",),
    ),
]
