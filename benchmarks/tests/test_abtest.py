"""benchmarks/tools/abtest.py: the signed-rank p-values and verdicts derived by hand,
and scipy's test as an independent oracle where it is exact (no ties)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.tools import abtest


def test_signed_rank_p_by_hand():
    """n = 3: the 8 sign patterns give W+ (sum of positive ranks) 0,1,2,3,3,4,5,6.
    All positive: W+ = 6, p = 1/8. [1, -2, 3]: W+ = 1 + 3 = 4, P(W+ >= 4) = 3/8.
    Ties [1, 1, -2]: average ranks 1.5, 1.5, 3 (doubled 3, 3, 6), W+ doubled = 3 + 3 = 6;
    subset sums of {3, 3, 6} are 0,3,3,6,6,9,9,12, so P(>= 6) = 5/8. Zeros are dropped."""
    assert abtest.signed_rank_p([0.1, 0.2, 0.3]) == pytest.approx(1 / 8)
    assert abtest.signed_rank_p([1.0, -2.0, 3.0]) == pytest.approx(3 / 8)
    assert abtest.signed_rank_p([1.0, 1.0, -2.0]) == pytest.approx(5 / 8)
    assert abtest.signed_rank_p([0.0, 0.1, 0.2, 0.3]) == pytest.approx(1 / 8)
    assert abtest.signed_rank_p([]) == 1.0
    # ten positives: 1/1024, the smallest p ten rounds can give
    assert abtest.signed_rank_p([0.01 * (i + 1) for i in range(10)]) == pytest.approx(1 / 1024)


def test_verdict_needs_a_significant_and_large_slowdown():
    base = [100.0] * 10
    slow = [110.0 + (i % 3) for i in range(10)]  # +10..12% every round: median +11%
    v = abtest.verdict(base, slow, threshold=0.05, alpha=0.01)
    assert v["regression"] and v["p"] == pytest.approx(1 / 1024)
    assert v["change"] == pytest.approx(math.expm1(math.log(1.11)))
    # +2% every round: beyond chance, but below the 5% threshold
    assert not abtest.verdict(base, [102.0] * 10, threshold=0.05, alpha=0.01)["regression"]
    # median +20% but three rounds much faster (ranks 8, 9, 10 of ten): W+ = 1+..+7 = 28,
    # the upper half of W+'s distribution (symmetric around 27.5): P(W+ >= 28) = 1/2
    mixed = [120.0 + i for i in range(7)] + [40.0, 35.0, 30.0]
    v = abtest.verdict(base, mixed, threshold=0.05, alpha=0.01, outlier=10.0)  # nothing set aside
    assert not v["regression"] and v["p"] == pytest.approx(0.5)
    assert not abtest.verdict(base, [90.0] * 10, threshold=0.05, alpha=0.01)["regression"]
    with pytest.raises(ValueError, match="paired"):
        abtest.verdict([1.0], [1.0, 2.0], 0.05, 0.01)


def test_cells_parse_and_bad_ones_are_named():
    assert abtest.parse_cell("medium-4x256") == ("medium", 4, 256)
    with pytest.raises(ValueError, match="'tiny16x64' is not PRESET-BxT"):
        abtest.parse_cell("tiny16x64")


def test_disturbed_rounds_are_set_aside():
    """Nine rounds +10% and one whose base process was slowed by 40% (a load burst):
    kept, that round (d = ln(110/140), the largest magnitude, negative) lifts p to
    0.046 (> 0.01: missed). Set aside (140 is 40% from the base median 100), the
    nine left, all positive, give p = 1/512."""
    base = [100.0] * 9 + [140.0]
    head = [110.0] * 9 + [110.0]
    v = abtest.verdict(base, head, threshold=0.05, alpha=0.01, outlier=0.2)
    assert v["kept"] == 9 and v["set_aside"] == 1 and v["p"] == pytest.approx(1 / 512) and v["regression"]
    everything = abtest.verdict(base, head, threshold=0.05, alpha=0.01, outlier=10.0)  # nothing set aside
    assert everything["kept"] == 10 and not everything["regression"]
    assert everything["p"] == pytest.approx(0.0459, abs=1e-4)
    # too few undisturbed rounds: no verdict
    noisy = abtest.verdict([100.0, 200, 100, 300, 100, 50, 100], [110.0] * 7, 0.05, 0.01, 0.2)
    assert noisy["too_noisy"] and not noisy["regression"]


def test_signed_rank_p_agrees_with_scipy_without_ties():
    """Continuous differences (no tied magnitudes, no zeros), 6 to 20 rounds,
    shifted from none to clearly positive: scipy's exact test is the oracle."""
    stats = pytest.importorskip("scipy.stats", reason="scipy is the optional extra: pip install -e '.[bench]'")
    rng = np.random.default_rng(0)
    for n in (6, 10, 14, 20):
        for shift in (0.0, 0.02, 0.05):
            d = rng.normal(shift, 0.05, n)
            want = stats.wilcoxon(d, alternative="greater", method="exact").pvalue
            assert abtest.signed_rank_p(list(d)) == pytest.approx(want, rel=1e-12), (n, shift)


def test_scipy_exact_ignores_ties_which_is_why_abtest_has_its_own():
    """The reason written in signed_rank_p's docstring, kept true: nine tied
    rounds (+10%) and one negative. Exact with ties: W+ = 9 x 5 = 45; sign
    patterns reaching it: all nine positive (with or without the 10: 2), eight
    and the 10 (9), seven and the 10 (36): 47/1024. scipy's "exact" uses the
    distribution without ties: 43/1024. When this fails, scipy handles ties
    and abtest can use it."""
    stats = pytest.importorskip("scipy.stats", reason="scipy is the optional extra: pip install -e '.[bench]'")
    d = [math.log(1.1)] * 9 + [math.log(110 / 140)]
    assert abtest.signed_rank_p(d) == pytest.approx(47 / 1024, rel=1e-12)
    assert stats.wilcoxon(d, alternative="greater", method="exact").pvalue == pytest.approx(43 / 1024, rel=1e-12)
