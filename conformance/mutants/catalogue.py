"""The catalogue: single-defect variants of `reference` and of `fast`, each
of which the conformance suite must catch (meta_tests/test_mutation.py).

A mutant replaces one snippet of code in one file of one package
(`reference`, `fast`, or the application's trainer in `feste`) and is run
against the suite on an implementation (`impl`, by default the mutated
package). The snippet is matched on code, not comments (anchor.py): its code
must occur exactly once in the current source, comments and trailing spaces
aside, so editing prose cannot break a mutant, while changing the quoted code
fails the fast catalogue test and the entry has to be updated: the catalogue
cannot silently rot.
`tests` names the test files run against the mutant (all of them must
exist): the conformance files that own the behaviour (bare names, in
conformance/), plus test_agreement.py where agreement applies, and for a
`fast` mutant fast's own tests where they own it (a path from the project
root, e.g. tests/fast_internals/test_fast_kernels.py: the runner copies its directory); `select`, when given, is a `-k` expression that narrows
the run to the tests that must catch it (a claim about *which* check sees
the defect). Keep mutants to plausible mistakes (the kind a port or an
optimisation would make), not syntax damage: a mutant that breaks imports
counts as an error, not as caught.

`blind_spot` names the class of defect (BLIND_SPOTS) a mutant stands for, so
that `--list` and the catalogue test can show each class has a mutant in
each implementation where it applies.
"""
from __future__ import annotations

from dataclasses import dataclass

# the packages mutated: the two implementations, and the application's trainer (run on reference)
PACKAGES = ("reference", "fast", "feste")
# Classes of defect that a check at initialisation, at block-multiple sizes,
# at tame magnitudes or within one call cannot see (blind spots). Not every
# class applies to every package: the reference has no blocks and no state
# that outlives a call, and checkpoint reading and tokenizer JSON live only
# in the reference (fast re-exports them).
BLIND_SPOTS = {
    "perturbed": "invisible at init (biases 0, gammas 1): a dropped or misplaced bias, a pre-bias value in backward",
    "sizes": "a partial last block or chunk (sizes that are not multiples of fast's blocks)",
    "magnitudes": "a wrong max-subtraction start value (large or very negative scores and logits)",
    "state": "state that outlives a call (caches keyed too coarsely, a decoder kept across updates)",
    "ties": "greedy generation's tie rule (lowest id)",
    "float64": "an accumulation SPEC puts in float64 done in float32",
    "checkpoint-ranges": "checkpoint values outside their SPEC §checkpoint ranges (betas, eps, numel)",
    "tokenizer-json": "optional tokenizer JSON fields (SPEC §tokenizer)",
    "batch-leak": "a batch row leaking into another",
}
APPLIES = {
    "reference": ("perturbed", "magnitudes", "ties", "float64", "checkpoint-ranges", "tokenizer-json", "batch-leak"),
    "fast": ("perturbed", "sizes", "magnitudes", "state", "ties", "float64", "batch-leak"),
    "feste": (),
}


@dataclass(frozen=True)
class Mutant:
    id: str  # short kebab-case name, used in test ids
    file: str  # path inside the package, e.g. "optim.py"
    original: str  # exact snippet of the current source (occurs exactly once)
    replacement: str  # the defect
    description: str  # what is wrong, in the words of the SPEC
    tests: tuple[str, ...]  # test files to run against the mutant (bare: in conformance/; else from the root)
    package: str = "reference"  # the package mutated
    select: str | None = None  # a `-k` expression: the tests that must catch it (None: all of `tests`)
    blind_spot: str | None = None  # the BLIND_SPOTS class it stands for, if any
    impl: str | None = None  # the implementation the suite runs on (None: the mutated package itself)

    @property
    def implementation(self) -> str:
        return self.impl or self.package


MUTANTS: list[Mutant] = [
    # --- optimiser, clipping, schedule (SPEC §optimiser) ----------------------
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
        ("test_optim.py",), blind_spot="float64",
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
        "(1.0 - math.cos(math.pi * progress))",
        "(1.0 - math.cos(2.0 * math.pi * progress))",
        "cosine decay over a full period (comes back up) instead of a half period",
        ("test_optim.py",),
    ),
    # --- model layers and loss (SPEC §model) --------------------------------
    Mutant(
        "gelu-constant-off", "layers.py",
        "GELU_A = 0.044715\n", "GELU_A = 0.04715\n",
        "GELU cubic coefficient 0.04715 instead of 0.044715",
        ("test_layers.py",),
    ),
    Mutant(
        "layernorm-no-eps", "layers.py",
        "    rstd = 1.0 / np.sqrt(var + LN_EPS)  # (N..., 1)\n",
        "    rstd = 1.0 / np.sqrt(var)  # (N..., 1)\n",
        "LayerNorm without eps inside the square root",
        ("test_layers.py",),
    ),
    Mutant(
        "layernorm-unbiased-variance", "layers.py",
        "    var = (xc * xc).mean(axis=-1, keepdims=True)  # (N..., 1)\n",
        "    var = (xc * xc).sum(axis=-1, keepdims=True) / (x.shape[-1] - 1)  # (N..., 1)\n",
        "LayerNorm with the unbiased (n - 1) variance",
        ("test_layers.py",),
    ),
    Mutant(
        "attention-scale-by-c", "layers.py",
        "    scale = 1.0 / math.sqrt(C // n_heads)\n"
        "    qh, kh, vh = (_split_heads(a, n_heads) for a in (q, k, v))\n"
        "    s = qh @ kh.transpose(0, 1, 3, 2)\n",
        "    scale = 1.0 / math.sqrt(C)\n"
        "    qh, kh, vh = (_split_heads(a, n_heads) for a in (q, k, v))\n"
        "    s = qh @ kh.transpose(0, 1, 3, 2)\n",
        "attention scores scaled by 1/sqrt(C) instead of 1/sqrt(head size)",
        ("test_layers.py",),
    ),
    Mutant(
        "causal-mask-off-by-one", "layers.py",
        "    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # (T, T)\n",
        "    future = np.triu(np.ones((T, T), dtype=bool), k=2)  # (T, T)\n",
        "causal mask lets each position see one future position",
        ("test_layers.py",),
    ),
    Mutant(
        "attention-dk-untransposed", "layers.py",
        "    dkh = (ds.transpose(0, 1, 3, 2) @ qh) * scale  # (B, NH, T, hs)\n",
        "    dkh = (ds @ qh) * scale  # (B, NH, T, hs)\n",
        "attention backward forgets to transpose the score gradient for dk",
        ("test_layers.py",),
    ),
    Mutant(
        "gelu-backward-drops-term", "layers.py",
        "    dx += th\n",
        "    dx = th\n",
        "GELU backward keeps 0.5 (1 + tanh u) and drops the 0.5 x sech^2(u) du/dx term",
        ("test_layers.py",),
    ),
    Mutant(
        "embedding-grad-overwrites-repeats", "layers.py",
        "    np.add.at(dwte, tokens.reshape(-1), dout.reshape(B * T, -1))",
        "    dwte[tokens.reshape(-1)] = dout.reshape(B * T, -1)",
        "token embedding gradient assigned instead of accumulated: repeated tokens keep one position",
        ("test_layers.py",),
    ),
    Mutant(
        "missing-residual-gradient", "layers.py",
        "    dx1 = dout + dx1_ln  # (B, T, C)\n",
        "    dx1 = dx1_ln  # (B, T, C)\n",
        "block backward drops the gradient through the MLP residual connection",
        ("test_gradcheck.py",),
    ),
    Mutant(
        "softmax-no-max-subtraction", "loss.py",
        "    z = logits - logits.max(axis=-1, keepdims=True)  # (B, T, V), max entry 0\n",
        "    z = logits  # (B, T, V), max entry 0\n",
        "cross-entropy without max-subtraction (overflows for large logits)",
        ("test_layers.py",),
    ),
    Mutant(
        "loss-mean-over-b-only", "loss.py",
        "    loss = float(nll.mean(dtype=np.float64))\n",
        "    loss = float(nll.sum(dtype=np.float64) / nll.shape[0])\n",
        "loss averaged over the batch only, summed over positions",
        ("test_layers.py",),
    ),
    Mutant(
        "loss-grad-over-b-only", "loss.py",
        "    return cross_entropy_backward_over(cache, B * T)\n",
        "    return cross_entropy_backward_over(cache, B)\n",
        "dLoss/dlogits divided by B instead of B*T (inconsistent with the mean loss)",
        ("test_layers.py",),
    ),
    Mutant(
        "mean-over-ignored", "loss.py",
        "    dlogits /= n  # the integer n in the dtype\n",
        "    dlogits /= probs.shape[0] * probs.shape[1]\n",
        "backward ignores mean_over: each micro-batch's gradient is that of its own mean",
        ("test_accumulate.py",),
    ),
    Mutant(
        "accumulate-overwrites", "model.py",
        "    accumulate.data += grads.data  # A = A + g, elementwise in the dtype\n",
        "    accumulate.data[...] = grads.data\n",
        "backward(accumulate=A) overwrites A instead of adding into it",
        ("test_accumulate.py",),
    ),
    Mutant(
        "micro-batch-own-mean", "accumulate.py",
        "                grads = impl.backward(params, cache, mean_over=B * T)\n",
        "                grads = impl.backward(params, cache, mean_over=split.micro_batch * T)\n",
        "the first micro-batch's gradient is that of its own mean, not its share of the step's mean",
        ("test_accumulate.py",),
        package="feste", impl="reference",
    ),
    Mutant(
        "relay-drops-running-sum", "accumulate.py",
        "            np.add(chunk, g[lo:hi], out=chunk)  # S_m = S_{m-1} + g_m, one rounding per element\n",
        "            chunk[...] = g[lo:hi]\n",
        "a process forwards its own micro-batch gradient instead of adding it to the running sum",
        ("test_accumulate.py",),
        package="feste", impl="reference",
    ),
    Mutant(
        "micro-batch-dropout-from-row-0", "trainer.py",
        "functools.partial(impl.DropoutKey, s.seed, step)\n",
        "(lambda row_offset: impl.DropoutKey(s.seed, step))\n",
        "every micro-batch draws the dropout masks of the batch's first rows, not of its own",
        ("test_accumulate.py",),
        package="feste", impl="reference",
    ),
    # --- parameter table and init (SPEC §model) ------------------------------
    Mutant(
        "init-resid-std-unscaled", "params.py",
        "    resid_std = 0.02 / math.sqrt(2 * L)",
        "    resid_std = 0.02",
        "attention-out and fc2 weights initialised with std 0.02, without 1/sqrt(2L)",
        ("test_params.py",),
    ),
    Mutant(
        "decay-biases", "params.py",
        '            row(f"{proj}.bias", (C,), "zeros")\n',
        '            row(f"{proj}.bias", (C,), "zeros", 0.0, True)\n',
        "q/k/v biases marked as decayed in the parameter table",
        ("test_params.py", "test_optim.py"),
    ),
    Mutant(
        "init-float64-draws", "params.py",
        "rng.standard_normal(spec.shape, dtype=np.float32) * np.float32(spec.std)",
        "rng.standard_normal(spec.shape).astype(np.float32) * np.float32(spec.std)",
        "init draws float64 normals and rounds them (different stream than float32 draws)",
        ("test_params.py",),
    ),
    # --- tokenizer (SPEC §tokenizer) ------------------------------------------------
    Mutant(
        "bpe-tie-break-reversed", "tokenizer.py",
        "                i = int(np.argmin(rank[left] * V + rank[right]))",
        "                i = int(np.argmax(rank[left] * V + rank[right]))",
        "BPE ties broken by the largest (left, right) strings instead of the smallest",
        ("test_tokenizer.py",),
    ),
    Mutant(
        "bpe-overlapping-replacement", "tokenizer.py",
        "        hits = hits[(hits - hits[first_index]) % 2 == 0]\n",
        "        hits = hits\n",
        "runs like 'aaa' replaced at overlapping positions instead of left to right without overlap",
        ("test_tokenizer.py",),
    ),
    Mutant(
        "bpe-count-update-misses-left-pair", "tokenizer.py",
        "                old = _touching(hits, (-1, 0, 1), work.size)\n",
        "                old = _touching(hits, (0, 1), work.size)\n",
        "pair counts not decremented for the pair ending at a merged position (stale overlapping counts)",
        ("test_tokenizer.py",),
    ),
    Mutant(
        "token-string-upper-hex", "tokenizer.py",
        '    return f"<{b:02x}>"\n',
        '    return f"<{b:02X}>"\n',
        "byte token strings in upper-case hex (changes JSON and string tie-breaks)",
        ("test_tokenizer.py",),
    ),
    # --- data (SPEC §data) ---------------------------------------------------------
    Mutant(
        "targets-not-shifted", "data.py",
        "    y = tokens[idx + 1].astype(np.int64)  # (B, T)\n",
        "    y = tokens[idx].astype(np.int64)  # (B, T)\n",
        "targets equal the inputs instead of the next tokens",
        ("test_data.py",),
    ),
    Mutant(
        "split-off-by-one", "data.py",
        "    return int(n * (1.0 - _check_fraction(val_fraction)))\n",
        "    return int(n * (1.0 - _check_fraction(val_fraction))) + 1\n",
        "train/validation split point one token late",
        ("test_data.py",),
    ),
    Mutant(
        "batch-rng-key-swapped", "data.py",
        "    rng = np.random.default_rng([seed, step])\n",
        "    rng = np.random.default_rng([step, seed])\n",
        "random batch offsets drawn from default_rng([step, seed]) instead of [seed, step]",
        ("test_data.py",),
    ),
    # --- checkpoint (SPEC §checkpoint) -----------------------------------------------------
    Mutant(
        "ckpt-moments-swapped", "checkpoint.py",
        '        moments = {"m": state.m, "v": state.v}\n',
        '        moments = {"m": state.v, "v": state.m}\n',
        "optimizer m and v swapped in the written file",
        ("test_checkpoint.py",),
    ),
    Mutant(
        "ckpt-tensor-order-swapped", "checkpoint.py",
        "        groups += [block[0:2], block[2:10], block[10:12], block[12:16]]\n",
        "        groups += [block[2:10], block[0:2], block[10:12], block[12:16]]\n",
        "optimizer tensors of the attention group written before those of ln1",
        ("test_checkpoint.py",),
    ),
    Mutant(
        "json-zero-float-format", "checkpoint.py",
        '        return sign + "0.0"\n',
        '        return sign + "0"\n',
        'JSON floats: zero written "0" instead of serde_json\'s "0.0" (dropout_rate in every config)',
        ("test_checkpoint.py",),
    ),
    Mutant(
        "json-small-float-format", "checkpoint.py",
        "    elif -6 < kk <= 0:\n",
        "    elif -5 < kk <= 0:\n",
        "JSON floats in [1e-6, 1e-5) written in scientific notation instead of 0.00000d",
        ("test_checkpoint.py",),
    ),
    # --- logger, training, generation (SPEC §training) -------------------------------------
    Mutant(
        "csv-lr-format", "logger.py",
        "{float(lr):.6f}", "{float(lr):.4f}",
        "CSV learning rate with 4 decimals instead of 6",
        ("test_logger.py",),
    ),
    Mutant(
        "csv-quote-not-doubled", "logger.py",
        """    quoted = '"' + escape_sample(sample).replace('"', '""') + '"'\n""",
        """    quoted = '"' + escape_sample(sample) + '"'\n""",
        "CSV sample field: embedded double quotes not doubled",
        ("test_logger.py",),
    ),
    Mutant(
        "resume-reseeds-batches", "trainer.py",
        "        x, y = self.random_batch(self.data.train, s.batch_size, s.seq_len, s.seed, step)\n",
        "        x, y = self.random_batch(self.data.train, s.batch_size, s.seq_len, s.seed, step - self.start)\n",
        "a resumed run restarts the batch sequence instead of continuing it",
        ("test_train.py",),
        package="feste", impl="reference",
    ),
    Mutant(
        "eval-windows-shifted", "trainer.py",
        "    starts = np.arange(n) * T  # [N]\n",
        "    starts = np.arange(n) * T + 1  # [N]\n",
        "validation windows start at 1, T+1, ... instead of 0, T, ...",
        ("test_train.py", "test_validation.py"),
        package="feste", impl="reference",
    ),
    Mutant(
        "generate-samples-first-position", "generate.py",
        "        ids[n] = sample_token(logits[0, -1], float(temperature), top_k, rng)\n",
        "        ids[n] = sample_token(logits[0, 0], float(temperature), top_k, rng)\n",
        "generation samples from the first position's logits instead of the last",
        ("test_generate.py",),
    ),
    Mutant(
        "generate-context-one-short", "generate.py",
        "        context = ids[max(0, n - block_size):n]  # [<= block_size]\n",
        "        context = ids[max(0, n - block_size + 1):n]  # [<= block_size]\n",
        "generation keeps block_size - 1 tokens of context once the window slides",
        ("test_generate.py",),
    ),
    Mutant(
        "top-k-keeps-one-more", "generate.py",
        "        z[order[top_k:]] = -np.inf\n",
        "        z[order[top_k + 1:]] = -np.inf\n",
        "top-k sampling keeps k + 1 candidates",
        ("test_generate.py",),
    ),
    # --- dropout (SPEC §dropout) ---------------------------------------------------------
    Mutant(
        "philox-seven-rounds", "dropout.py",
        "PHILOX_ROUNDS = 10\n", "PHILOX_ROUNDS = 7\n",
        "Philox4x32-7 instead of Philox4x32-10",
        ("test_dropout.py",),
    ),
    Mutant(
        "dropout-keep-strictly-above", "dropout.py",
        "    return dropout_words(seed, step, layer, site, shape, row_offset) >= np.uint32(threshold)\n",
        "    return dropout_words(seed, step, layer, site, shape, row_offset) > np.uint32(threshold)\n",
        "an element is kept when its word is above the threshold instead of at or above it",
        ("test_dropout.py",),
    ),
    Mutant(
        "dropout-wrong-scale", "dropout.py",
        "    return np.dtype(dtype).type(1.0 / (1.0 - check_rate(p)))\n",
        "    return np.dtype(dtype).type(1.0 - check_rate(p))\n",
        "kept elements multiplied by 1 - p instead of 1 / (1 - p)",
        ("test_dropout.py",),
    ),
    Mutant(
        "dropout-mask-reused-across-layers", "model.py",
        "        return dropout_mask(key.seed, key.step, layer, site, shape, p, key.row_offset)\n",
        "        return dropout_mask(key.seed, key.step, 0, site, shape, p, key.row_offset)\n",
        "every block draws layer 0's masks",
        ("test_dropout.py",),
    ),
    Mutant(
        "dropout-mask-reused-across-sites", "model.py",
        "                     mask(i, MLP_OUTPUT, (B, T, C)))\n",
        "                     mask(i, ATTENTION_OUTPUT, (B, T, C)))\n",
        "the MLP output reuses the attention output's mask",
        ("test_dropout.py",),
    ),
    Mutant(
        "dropout-backward-without-mask", "layers.py",
        "    dm = dout if keep_mlp is None else dropout_backward(dout, keep_mlp, scale)  # (B, T, C)\n",
        "    dm = dout  # (B, T, C)\n",
        "the MLP output's gradient passes back without the forward's mask and scale",
        ("test_gradcheck.py",),
    ),
    Mutant(
        "attention-dropout-backward-uses-p", "layers.py",
        "    dvh = pd.transpose(0, 1, 3, 2) @ dy  # (B, NH, T, hs)\n",
        "    dvh = p.transpose(0, 1, 3, 2) @ dy  # (B, NH, T, hs)\n",
        "dV from the probabilities before dropout (Feste's dropout backward)",
        ("test_gradcheck.py",),
    ),
    Mutant(
        "dropout-during-eval", "accumulate.py",
        "        _, loss, _ = impl.forward(params, x_all[start:start + batch_size], y_all[start:start + batch_size])\n",
        "        _, loss, _ = impl.forward(params, x_all[start:start + batch_size], y_all[start:start + batch_size],\n"
        "                                  dropout=impl.DropoutKey(0, 0))\n",
        "the validation loss is computed with dropout",
        ("test_train.py",),
        package="feste", impl="reference",
    ),
    Mutant(
        "dropout-same-mask-every-step", "trainer.py",
        "functools.partial(impl.DropoutKey, s.seed, step)\n",
        "functools.partial(impl.DropoutKey, s.seed, 0)\n",
        "every training step draws step 0's masks",
        ("test_train.py",),
        package="feste", impl="reference",
    ),
]

# --- the blind-spot classes (BLIND_SPOTS), in reference and in fast ----------------------
MUTANTS += [
    # a batch row leaking into another: caught by batch independence itself,
    # whose limits are summation-order budgets (SPEC §tolerances)
    Mutant(
        "batch-rows-leak", "layers.py",
        "    mean = x.mean(axis=-1, keepdims=True)  # (N..., 1)\n",
        "    mean = x.mean(axis=(0, -1), keepdims=True)  # (N..., 1)\n",
        "LayerNorm mean pooled over the batch axis too (a BatchNorm mix-up): rows leak into each other",
        ("test_model.py",), select="batch_independence", blind_spot="batch-leak",
    ),
    Mutant(
        "fast-batch-rows-leak", "_attention.py",
        "            r = b * T + t\n",
        "            r = b * (T - 1) + t\n",
        "head split reads row b*(T-1)+t: each batch row's first positions come from the row before",
        ("test_model.py",), package="fast", select="batch_independence", blind_spot="batch-leak",
    ),
]

# --- dropout in fast (SPEC §dropout): caught by the agreement with reference --------
MUTANTS += [
    Mutant(
        "fast-dropout-position-off-by-one", "dropout.py",
        "        _keep_vector(kr, C, np.uint64(r % T), np.uint64(r // T) + c2, c3, k0, k1, thr)\n",
        "        _keep_vector(kr, C, np.uint64(r % T + 1), np.uint64(r // T) + c2, c3, k0, k1, thr)\n",
        "the model's row masks drawn with counter c1 = t + 1 instead of t",
        ("test_agreement.py",), package="fast", select="dropout",
    ),
    Mutant(
        "fast-dropout-backward-unscaled", "dropout.py",
        "            orow[c] = dr[c] * scale if kr[c] else 0.0\n",
        "            orow[c] = dr[c] if kr[c] else 0.0\n",
        "a dropped branch's gradient masked but not scaled by 1 / (1 - p)",
        ("test_agreement.py",), package="fast", select="dropout",
    ),
    Mutant(
        "fast-attention-dropout-backward-missing", "_attention.py",
        "        drop_backward(ds, pd)  # dL/dp: the forward's mask\n",
        "        pass  # dL/dp: the forward's mask\n",
        "the attention probabilities' gradient passes back without the forward's mask and scale",
        ("test_agreement.py",), package="fast", select="dropout",
    ),
]

# the other classes, reference first
MUTANTS += [
    Mutant(
        "ln2-beta-misplaced", "layers.py",
        '    h2, ln2_cache = layernorm_forward(x1, w["ln2.gamma"], w["ln2.beta"])  # (B, T, C)\n',
        '    h2, ln2_cache = layernorm_forward(x1, w["ln2.gamma"], w["ln1.beta"])  # (B, T, C)\n',
        "the block's second LayerNorm adds ln1.beta instead of ln2.beta (both 0 at init)",
        ("test_model.py", "test_gradcheck.py"), blind_spot="perturbed",
    ),
    Mutant(
        "out-bias-misplaced", "layers.py",
        '    a, out_cache = linear_forward(y, w["out.weight"], w["out.bias"])  # (B, T, C)\n',
        '    a, out_cache = linear_forward(y, w["out.weight"], w["v.bias"])  # (B, T, C)\n',
        "the attention output projection adds v.bias instead of out.bias (both 0 at init)",
        ("test_model.py", "test_gradcheck.py"), blind_spot="perturbed",
    ),
    Mutant(
        "xent-max-starts-at-zero", "loss.py",
        "    z = logits - logits.max(axis=-1, keepdims=True)  # (B, T, V), max entry 0\n",
        "    z = logits - np.maximum(logits.max(axis=-1, keepdims=True), 0)  # (B, T, V), max entry 0\n",
        "cross-entropy subtracts max(0, max z): a running max started at 0 (rows of very negative logits underflow)",
        ("test_layers.py",), blind_spot="magnitudes",
    ),
    Mutant(
        "attention-max-starts-at-zero", "layers.py",
        "    s -= s.max(axis=-1, keepdims=True)  # the diagonal is never masked: max is finite\n",
        "    s -= np.maximum(s.max(axis=-1, keepdims=True), 0)  # the diagonal is never masked: max is finite\n",
        "attention softmax subtracts max(0, max s): rows of very negative scores underflow to 0/0",
        ("test_layers.py",), blind_spot="magnitudes",
    ),
    Mutant(
        "greedy-last-max", "generate.py",
        "        return int(np.argmax(logits))  # first index of the maximum\n",
        "        return int(logits.size - 1 - np.argmax(logits[::-1]))  # first index of the maximum\n",
        "greedy generation breaks ties by the highest id instead of the lowest",
        ("test_generate.py",), blind_spot="ties",
    ),
    Mutant(
        "loss-mean-float32", "loss.py",
        "    loss = float(nll.mean(dtype=np.float64))\n",
        "    loss = float(nll.mean())\n",
        "the loss mean accumulated in the logits dtype (float32) instead of float64",
        ("test_layers.py",), blind_spot="float64",
    ),
    Mutant(
        "ckpt-beta-one-accepted", "checkpoint.py",
        "0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0",
        "0.0 <= beta1 <= 1.0 and 0.0 <= beta2 <= 1.0",
        "checkpoint reading accepts beta = 1 (SPEC §checkpoint: betas in [0, 1))",
        ("test_checkpoint.py",), blind_spot="checkpoint-ranges",
    ),
    Mutant(
        "ckpt-eps-zero-accepted", "checkpoint.py",
        "math.isfinite(eps) and eps > 0.0",
        "math.isfinite(eps) and eps >= 0.0",
        "checkpoint reading accepts eps = 0 (SPEC §checkpoint: eps > 0)",
        ("test_checkpoint.py",), blind_spot="checkpoint-ranges",
    ),
    Mutant(
        "ckpt-numel-only-bounded", "checkpoint.py",
        "        if numel != math.prod(shape):\n",
        "        if numel < math.prod(shape):\n",
        "checkpoint reading only checks that numel covers the shape, not that it equals it",
        ("test_checkpoint.py",), blind_spot="checkpoint-ranges",
    ),
    Mutant(
        "tokenizer-unk-dropped", "tokenizer.py",
        '        unk = doc.get("unk_token", UNK_TOKEN)\n',
        "        unk = UNK_TOKEN\n",
        "tokenizer JSON: a file's own unk_token is replaced by the default instead of kept",
        ("test_tokenizer.py",), blind_spot="tokenizer-json",
    ),
]

# fast: the same classes where they apply (fast has blocks, chunks and state;
# checkpoint and tokenizer JSON are the reference's, re-exported)
MUTANTS += [
    Mutant(
        "fast-gelu-backward-pre-bias", "_gelu.py",
        "            hr[c] = x\n",
        "",
        "fused fc1 bias + GELU does not store the biased input: GELU backward reads the pre-bias value",
        ("test_agreement.py",), package="fast", blind_spot="perturbed",
    ),
    Mutant(
        "fast-residual-drops-bias", "_layernorm.py",
        "            val = x[r, c] + (a[r, c] + bias[c])\n",
        "            val = x[r, c] + a[r, c]\n",
        "the fused residual add + LayerNorm drops the projection's bias (out.bias, fc2.bias: 0 at init)",
        ("test_agreement.py",), package="fast", blind_spot="perturbed",
    ),
    Mutant(
        "fast-q-bias-misplaced", "_attention.py",
        "                qo[d] = qr[d] + bqh[d]\n",
        "                qo[d] = qr[d] + bkh[d]\n",
        "head split adds k.bias to q (both 0 at init)",
        ("test_agreement.py",), package="fast", blind_spot="perturbed",
    ),
    Mutant(
        "fast-gemm-tail-block-lost", "_blas.py",
        "    return [(i, min(i + size, n)) for i in range(0, n, size)]\n",
        "    return [(i, i + size) for i in range(0, n - size + 1, size)]\n",
        "blocked matmul drops the last, partial block of rows, columns or matrices",
        ("test_agreement.py",), package="fast", blind_spot="sizes",
    ),
    Mutant(
        "fast-colsum-tail-chunk-lost", "_colsum.py",
        "    N, F = d.shape\n    n_chunks = (N + rows - 1) // rows\n",
        "    N, F = d.shape\n    n_chunks = max(1, N // rows)\n",
        "bias gradients' column sums count whole 64-row chunks only: a partial last chunk is lost",
        ("test_agreement.py", "test_layers.py"), package="fast", blind_spot="sizes",
    ),
    Mutant(
        "fast-layernorm-backward-tail-chunk-lost", "_layernorm.py",
        "    N, C = x.shape\n    n_chunks = (N + rows - 1) // rows\n    for ch in prange(n_chunks):\n"
        "        g = pg[ch]\n        b = pb[ch]\n        q = ps[ch]\n",
        "    N, C = x.shape\n    n_chunks = max(1, N // rows)\n    for ch in prange(n_chunks):\n"
        "        g = pg[ch]\n        b = pb[ch]\n        q = ps[ch]\n",
        "the fused LayerNorm backward (input and parameter gradients, a branch's bias gradient) handles whole "
        "64-row chunks only: the rows of a partial last chunk get no gradient",
        ("test_agreement.py",), package="fast", blind_spot="sizes",
    ),
    Mutant(
        "fast-head-merge-tail-chunk-lost", "_attention.py",
        "    N = B * T\n    n_chunks = (N + rows - 1) // rows\n",
        "    N = B * T\n    n_chunks = max(1, N // rows)\n",
        "the head merge of dq, dk, dv with the q/k/v bias gradients handles whole 64-row chunks only",
        ("test_agreement.py",), package="fast", blind_spot="sizes",
    ),
    Mutant(
        "fast-adamw-tail-chunk-lost", "optim.py",
        "    P = p.shape[0]\n    n_chunks = (P + chunk - 1) // chunk\n",
        "    P = p.shape[0]\n    n_chunks = max(1, P // chunk)\n",
        "AdamW updates whole 32768-element chunks only: the partial last chunk keeps its old values",
        ("test_optim.py",), package="fast", blind_spot="sizes",
    ),
    Mutant(
        "fast-decode-tail-rows-lost", "generate.py",
        "    return np.empty((-(-K // ROW_CHUNK), N), dtype=dtype)\n",
        "    return np.empty((max(1, K // ROW_CHUNK), N), dtype=dtype)\n",
        "generation's one-row products sum whole 64-row chunks of a weight only: its last rows are lost",
        ("test_agreement.py", "tests/fast_internals/test_fast_kernels.py"), package="fast", blind_spot="sizes",
    ),
    Mutant(
        "fast-xent-max-starts-at-zero", "_softmax.py",
        "        mx = row[0]\n",
        "        mx = np.float32(0.0) * row[0]\n",
        "fused softmax + cross-entropy (one kernel for both dtypes) starts its running max at 0 instead of the first logit",
        ("test_layers.py", "test_agreement.py"), package="fast", blind_spot="magnitudes",
    ),
    Mutant(
        "fast-attention-max-starts-at-zero", "_softmax.py",
        "            mx = p[0] * scale\n",
        "            mx = np.float32(0.0) * p[0]\n",
        "causal softmax (one kernel for both dtypes) starts its running max at 0 instead of the first score",
        ("test_layers.py", "test_agreement.py"), package="fast", blind_spot="magnitudes",
    ),
    Mutant(
        "fast-decode-max-starts-at-zero", "generate.py",
        "        mx = np.float32(-np.inf)\n",
        "        mx = np.float32(0.0)\n",
        "generation's one-query attention starts its running max at 0 instead of -inf",
        ("tests/fast_internals/test_fast_kernels.py", "test_agreement.py"), package="fast", blind_spot="magnitudes",
    ),
    Mutant(
        "fast-decay-mask-keyed-by-count", "optim.py",
        "    key = params.config\n",
        "    key = params.data.size\n",
        "AdamW's decay mask cached by parameter count: a config with the same count reuses another's mask",
        ("test_state.py",), package="fast", blind_spot="state",
    ),
    Mutant(
        "fast-qkv-cached-on-params", "generate.py",
        '            w["qkv.weight"] = np.concatenate([p[f"blocks.{i}.{n}.weight"] for n in "qkv"], axis=1)\n',
        '            w["qkv.weight"] = p.__dict__.setdefault(f"_qkv{i}", np.concatenate(\n'
        '                [p[f"blocks.{i}.{n}.weight"] for n in "qkv"], axis=1))\n',
        "the decoder's fused q/k/v weight is cached on the Params object: later in-place updates are not seen",
        ("test_state.py",), package="fast", blind_spot="state",
    ),
    Mutant(
        "fast-greedy-last-max", "generate.py",
        "        if x[i] > x[best]:\n",
        "        if x[i] >= x[best]:\n",
        "greedy generation's argmax keeps the last of equal maxima instead of the first",
        ("test_generate.py",), package="fast", blind_spot="ties",
    ),
    Mutant(
        "fast-loss-mean-float32", "_softmax.py",
        "    s = 0.0\n    for i in range(values.shape[0]):\n        s += np.float64(values[i])\n",
        "    s = np.float32(0.0)\n    for i in range(values.shape[0]):\n        s += values[i]\n",
        "the loss mean accumulated in float32 instead of float64",
        ("test_layers.py", "test_agreement.py"), package="fast", blind_spot="float64",
    ),
    Mutant(
        "fast-grad-norm-squares-float32", "optim.py",
        "            x0, x1, x2, x3 = np.float64(gc[i]), np.float64(gc[i + 1]), np.float64(gc[i + 2]), np.float64(gc[i + 3])\n",
        "            x0, x1, x2, x3 = gc[i], gc[i + 1], gc[i + 2], gc[i + 3]\n",
        "gradient norm: a quarter of the squares computed in float32 before the float64 sum",
        ("test_optim.py",), package="fast", blind_spot="float64",
    ),
]
