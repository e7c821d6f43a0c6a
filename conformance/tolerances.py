"""Every tolerance the suite uses, each with the SPEC section that justifies it.

Tests never write a literal tolerance: they import a name from here.
"""

# SPEC section 8: fast vs reference in float32. Different summation orders
# (BLAS blocking, fused kernels) move results by a few float32 ulps per
# reduction; 1e-5 relative leaves room for C up to 512 and V = 512.
LOGITS_RTOL = 1e-5
LOSS_RTOL = 1e-5

# SPEC section 8: per gradient tensor, ||g_impl - g_ref|| / ||g_ref||. Backward
# chains more reductions than forward (softmax, layernorm, attention), so the
# error budget is an order of magnitude wider than for logits.
GRAD_REL_NORM = 1e-4

# SPEC section 3: the float64-accumulated gradient norm may differ only in
# summation order between implementations.
GRAD_NORM_RTOL = 1e-12

# SPEC section 8: reference float64 backward vs central finite differences on
# sampled coordinates. With h = 1e-6 in float64 the truncation error (h^2) and
# rounding error (eps/h ~ 1e-10) are both far below 1e-6.
FD_REL = 1e-6
FD_STEP = 1e-6
# Relative error is measured as |a - b| / max(|a|, |b|, FD_ABS_FLOOR): a
# coordinate whose true gradient is ~0 is compared absolutely instead.
FD_ABS_FLOOR = 1e-6

# SPEC section 2: the loss at init must be close to ln V...
BASELINE_ABS = 0.15
# ...and agree with ln V + sigma^2/2, sigma^2 = 0.0004*C, to this much.
BASELINE_EXPECTED_ABS = 0.03
BASELINE_EXCESS_PER_C = 0.0002

# SPEC section 2 init statistics: a sample mean of n N(0, s^2) draws has
# standard error s/sqrt(n); the sample std has standard error ~ s/sqrt(2n).
# Six standard errors keeps a false alarm below 1e-8 per tensor.
INIT_STAT_SIGMAS = 6.0

# SPEC section 3: a 50-step float32 training trajectory, fast vs reference.
# Per-step differences of ~1e-5 relative compound through AdamW; after 50
# steps the losses agree to this relative tolerance.
TRAJECTORY_LOSS_RTOL = 1e-3

# SPEC section 3: AdamW over many steps in float32 vs a float64
# re-derivation: relative error per element grows ~ steps * 2^-24.
ADAMW_F64_RTOL = 1e-4

# SPEC section 3: the first AdamW step from zero moments moves each weight by
# lr * g / (|g| + eps), i.e. lr * sign(g) up to eps/|g| (<= 1e-6 for the
# |g| >= 1e-2 the test draws) plus a few float32 roundings (m, v, the bias
# corrected quotients, sqrt, and p - update, which relative to an update of
# lr = 1e-3 on weights drawn N(0, 0.02^2), |p| < 0.1, costs ulp(p)/2/lr < 4e-6).
# 1e-5 covers the sum.
ADAMW_SIGN_STEP_RTOL = 1e-5
