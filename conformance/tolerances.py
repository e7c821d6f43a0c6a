"""Every tolerance the suite uses, each with the SPEC section that justifies it.

Tests never write a literal tolerance: they import a name from here.
"""

# SPEC §tolerances: fast vs reference in float32. Different summation orders
# (BLAS blocking, fused kernels) move results by a few float32 ulps per
# reduction; 1e-5 relative leaves room for C up to 512 and V = 512.
# Logits are compared with assert_scaled_max, max|a - b| / max|b| (SPEC
# §tolerances: elementwise relative error is meaningless for logits near 0);
# the loss, a positive scalar ~ln V, with |a - b| / |b|.
LOGITS_RTOL = 1e-5
LOSS_RTOL = 1e-5

# SPEC §tolerances: per gradient tensor, ||g_impl - g_ref|| / ||g_ref||. Backward
# chains more reductions than forward (softmax, layernorm, attention), so the
# error budget is an order of magnitude wider than for logits.
GRAD_REL_NORM = 1e-4

# SPEC §optimiser: the float64-accumulated gradient norm may differ only in
# summation order between implementations.
GRAD_NORM_RTOL = 1e-12

# SPEC §numerics and §tolerances: reference float64 backward vs finite differences on
# sampled coordinates, relative error <= 1e-6 (SPEC §tolerances).
FD_REL = 1e-6
# The difference quotient is the fourth-order central stencil
#   (L(x-2h) - 8 L(x-h) + 8 L(x+h) - L(x+2h)) / (12 h).
# Its rounding error is ~1.5 eps |L| / h ~ 1e-11 for h = 1e-4 and |L| ~ 3, its
# truncation error h^4 |L5| / 30 ~ 3e-18 |L5| (L5: fifth derivative); measured
# on gradcheck params (std 0.2): worst absolute error 8e-12 over 666
# coordinates. (The second-order stencil with h = 1e-6 has rounding error
# ~eps |L| / h ~ 7e-10, so 1e-6 relative is out of reach below |g| ~ 1e-3.)
FD_STEP = 1e-4
# Relative error is measured as |a - b| / max(|a|, |b|, FD_ABS_FLOOR): a
# coordinate whose true gradient is below the floor is compared absolutely, to
# FD_REL * FD_ABS_FLOOR = 1e-10, ten times the stencil's own error above.
FD_ABS_FLOOR = 1e-4

# SPEC §model: the loss at init must be close to ln V...
BASELINE_ABS = 0.15
# ...and agree with ln V + sigma^2/2, sigma^2 = 0.0004*C, to this much.
BASELINE_EXPECTED_ABS = 0.03
BASELINE_EXCESS_PER_C = 0.0002

# SPEC §model init statistics: a sample mean of n N(0, s^2) draws has
# standard error s/sqrt(n); the sample std has standard error ~ s/sqrt(2n).
# Six standard errors keeps a false alarm below 1e-8 per tensor.
INIT_STAT_SIGMAS = 6.0

# SPEC §tolerances: a 50-step float32 training trajectory, fast vs reference,
# loss per step |a - b| / |b|. Per-step differences (gradients ~1e-6 relative)
# compound through AdamW; measured 1.1e-8 after 50 clipped steps at lr 3e-3
# (test_agreement). 1e-4 leaves four orders of margin for other BLAS builds
# while still seeing a wrong update rule (1e-3, the first guess, was a
# hundred thousand times the measured drift).
TRAJECTORY_LOSS_RTOL = 1e-4

# SPEC §optimiser: AdamW over many steps in float32 vs a float64
# re-derivation: relative error per element grows ~ steps * 2^-24.
ADAMW_F64_RTOL = 1e-4

# SPEC §optimiser: the first AdamW step from zero moments moves each weight by
# lr * g / (|g| + eps), i.e. lr * sign(g) up to eps/|g| (<= 1e-6 for the
# |g| >= 1e-2 the test draws) plus a few float32 roundings (m, v, the bias
# corrected quotients, sqrt, and p - update, which relative to an update of
# lr = 1e-3 on weights drawn N(0, 0.02^2), |p| < 0.1, costs ulp(p)/2/lr < 4e-6).
# 1e-5 covers the sum.
ADAMW_SIGN_STEP_RTOL = 1e-5

# --- SPEC §model: the model against independent oracles --------------------
# float64 vectorised layers vs pure-Python float64 loops: the same arithmetic
# in another summation order; each sum has at most a few hundred terms, so the
# difference is a few hundred ulps of the largest term at most. Measured as
# max |got - want| / max |want| (elementwise ratios are meaningless where a
# value cancels to ~0).
ORACLE_F64_RTOL = 1e-12
# float32 layers vs the float64 pure-Python loops, same max-norm metric:
# float32 eps is 6e-8; sums of <= 64 terms and one exp/tanh/sqrt per element
# stay below ~100 eps.
ORACLE_F32_RTOL = 1e-5
# float32 model vs the same params widened to float64 (SPEC §numerics):
# logits max-norm relative (measured 8e-7 for every preset) and each gradient
# tensor's relative norm (measured 1.2e-6), borrowing the section-8 budgets
# because float32 vs float64 is the extreme case of a summation-order change.
F32_VS_F64_LOGITS_RTOL = 1e-5
F32_VS_F64_GRAD_REL_NORM = 1e-4
# A gradient that is exactly zero in exact arithmetic (k.bias: a bias on k adds
# q_t . b to every score of row t, which softmax ignores) is a float64 sum of
# B*T terms that cancel: its norm stays within ~sqrt(B*T) eps of the norm of
# the terms (measured 3e-17 relative to the k.weight gradient).
ZERO_GRAD_F64_REL = 1e-12
# Batch independence (SPEC §numerics and §tolerances): row b of a batch against the
# same row run alone, max|a - b| / max|b| over the logits. A batch is one
# [B*T, C] product where the row alone is [T, C]: BLAS picks its kernel, its
# blocking and its accumulation order from the shape (M) and the CPU, so the
# two may sum in different orders; bitwise equality holds on some machines and
# not on others (OpenBLAS's Haswell dgemm: up to 387 ulp, 4.4e-16 on this
# metric). So both dtypes get the summation-order budget of their oracle
# comparisons: float32 the section-8 logits budget (measured 2.6e-7 under the
# Haswell kernel), float64 ORACLE_F64_RTOL's (measured 4.4e-16). A row leaking
# into another is not a summation order: the leak mutants of the catalogue
# (conformance/mutants, `batch-rows-leak` in reference, `fast-batch-rows-leak`)
# move the logits by 0.83 and 1.2 on this metric, in both dtypes: eleven orders
# of magnitude above the float64 limit, almost five above the float32 one (a
# leak whose coupling is larger than the limit shows).
BATCH_F32_RTOL = 1e-5
BATCH_F64_RTOL = 1e-12

# SPEC §training: sampled-token frequencies vs their closed-form probability.
# A count of n Bernoulli(p) draws has standard error sqrt(n p (1-p)); with a
# fixed seed the test is deterministic, and 5 standard errors would be
# exceeded by chance with probability < 1e-6 for a correct sampler.
SAMPLE_FREQ_SIGMAS = 5.0

# SPEC §training: a learning check, not a comparison. On the test's
# two-successor Markov stream (optimal loss ln 2 = 0.69 per token, start
# ln 256 = 5.55) 60 steps of the small test model measured a drop of about
# 2 nats (5.53 -> 3.58); a trainer that does not learn (sign error, no update, wrong batches)
# stays near ln 256. One nat separates the two with a wide margin.
LEARNING_MIN_DROP = 1.0

# SPEC §performance: fast's float32 GELU uses a rational tanh (Eigen's 13/6
# approximation, clamped at +-7.9053) so its loops are pure arithmetic. Its
# measured maximum relative error is 2.6e-7 (about 2 float32 ulps, 2^-23 =
# 1.2e-7); the limit leaves a factor 4 and is 40x inside the logits budget.
TANH_F32_REL = 1e-6
# SPEC §fast-model: fast's float32 exp for x <= 0 (fast/_softmax.py EXP_F32, used by the
# causal attention softmax and the fused softmax + cross-entropy): max relative error 3.0e-7 measured over every float32
# in [-87.33, 0]; 1e-6 leaves 3x for other compilers' contraction choices while far below
# the 1e-5 loss budget (§tolerances). Subnormal results (x < -87.33): absolute error
# at most 3 * 2^-149 (two roundings).
EXP_F32_REL = 1e-6
EXP_F32_SUBNORMAL_ABS = 3 * 2.0 ** -149

# SPEC §backward and §micro-batches: a batch cut into micro-batches whose gradients
# (backward with mean_over = B*T) are summed in order, against the whole
# batch's gradient. The arithmetic is the same up to summation order (each
# weight gradient's sum over the B*T rows is cut into partial sums), so
# per tensor relative norm (k.bias against its k.weight, §tolerances): float32
# measured <= 7e-7 (tiny at B=16, T=64 and a non-preset config at B=6,
# T=37, micro-batches of 1, 2 and B/2 rows, both implementations); 1e-5
# leaves a factor 14 and is ten times tighter than the cross-implementation
# GRAD_REL_NORM. float64 measured <= 1.3e-15: the ORACLE_F64 budget.
ACCUM_GRAD_REL_NORM = 1e-5
ACCUM_F64_REL_NORM = 1e-12

# SPEC §dropout: the keep rate of a dropout mask over n elements is
# binomial(n, q), q = 1 - floor(p 2^32) / 2^32, standard error sqrt(n q (1-q));
# so is the number of elements on which two independent masks agree
# (q^2 + (1-q)^2). Six standard errors: a false alarm below 1e-8 per check
# (the masks are fixed, so a correct implementation passes every run).
DROPOUT_RATE_SIGMAS = 6.0

# --- SPEC §vectors: the language-neutral vectors ---------------------------------
# Clipped gradients (optim/clip): g * F(max_norm / norm) with the implementation's
# own norm, which may differ from reference's in summation order (GRAD_NORM_RTOL):
# the two float32 factors then differ by at most one ulp (a relative 2^-23), so
# the exact products differ by at most 2^-23 relative, at most two ulps of the
# product, and rounding each to nearest keeps them within two.
CLIP_ULP = 2
# SPEC §tolerances's (S) holds for the platform's cos/pow called in the same process as
# the oracle; a vector carries reference's result into another process, libm
# and language, whose cos (the cosine schedule, optim/lr) may be one ulp off
# where it is not correctly rounded (glibc's is; C and Rust standard libraries
# elsewhere need not be). Everything else in a schedule is exact arithmetic.
LIBM_ULP = 1
