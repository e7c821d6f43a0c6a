"""The assertion helpers fail when they must and write the whole message
(what, the metric against its limit and the fraction used, the worst index
with both values, the ULP distance for bitwise checks, the context).

Hand-derived examples; these check the suite's tools, not an implementation,
so they do not take the `impl` fixture.
"""
import numpy as np
import pytest

from conformance.assertions import (
    assert_allclose_rel, assert_bitwise, assert_bytes_equal, assert_rel_norm, assert_scaled_max,
    assert_within_ulp, ulp_distance,
)

CTX = {"impl": "fast", "preset": "tiny", "B": 2, "T": 3, "seed": 7}


def test_scaled_max_metric_by_hand():
    """want = [[1, -2], [0, 4]], got differs by 4e-5 at (0, 1):
    max|got - want| / max|want| = 4e-5 / 4 = 1e-5 (up to rounding of -2 + 4e-5), passes 1.001e-5;
    a limit of 9e-6 fails and names 1.1x, the index and both values."""
    want = np.array([[1.0, -2.0], [0.0, 4.0]])
    got = want.copy()
    got[0, 1] += 4e-5
    assert assert_scaled_max("logits", got, want, 1.001e-5) == pytest.approx(1e-5)
    with pytest.raises(AssertionError) as info:
        assert_scaled_max("logits", got, want, 9e-6, CTX)
    msg = str(info.value)
    for part in ("logits:", "1.000e-05 > limit 9.0e-06", "1.1x the limit", "index (0, 1)",
                 "got -1.99996", "expected -2.0", "impl=fast", "preset=tiny", "B=2", "T=3", "seed=7"):
        assert part in msg, (part, msg)


def test_scaled_max_is_not_fooled_by_logits_near_zero():
    """An entry 1e-9 where the reference has 0 is a 1e-9/4 scaled error,
    though its elementwise relative error is infinite."""
    want = np.array([0.0, 4.0])
    got = np.array([1e-9, 4.0])
    assert assert_scaled_max("logits", got, want, 1e-5) == pytest.approx(2.5e-10)
    with pytest.raises(AssertionError):
        assert_allclose_rel("logits", got, want, 1e-5)


def test_non_finite_and_shape_mismatch_fail():
    for check in (assert_scaled_max, assert_allclose_rel):  # the index as plain integers, as the worst index is
        with pytest.raises(AssertionError, match=r"non-finite value at index \(1,\)"):
            check("x", [1.0, np.nan], [1.0, 1.0], 1.0)
        with pytest.raises(AssertionError, match=r"non-finite value at index \(0, 1\) \[impl=fast"):
            check("x", [[1.0, np.inf]], [[1.0, 1.0]], 1.0, CTX)
    with pytest.raises(AssertionError, match=r"shape \(2,\) != expected \(3,\)"):
        assert_rel_norm("g", np.zeros(2), np.ones(3), 1.0)


def test_rel_norm_by_hand():
    """||(3, 4) - (3, 4.5)|| / ||(3, 4.5)|| = 0.5 / sqrt(29.25) = 0.0924..."""
    metric = assert_rel_norm("g", [3.0, 4.0], [3.0, 4.5], 0.1)
    assert metric == pytest.approx(0.5 / np.sqrt(29.25))
    with pytest.raises(AssertionError, match=r"9\.245e-02 > limit 5\.0e-02 \(1\.8x the limit\); worst at index \(1,\)"):
        assert_rel_norm("g", [3.0, 4.0], [3.0, 4.5], 0.05)


def test_bitwise_reports_ulps():
    one = np.float32(1.0)
    got = np.array([one, np.nextafter(np.nextafter(one, np.float32(2)), np.float32(2))], dtype=np.float32)
    want = np.array([one, one], dtype=np.float32)
    with pytest.raises(AssertionError, match=r"1 of 2 elements differ, max 2 ulp; worst at index \(1,\)"):
        assert_bitwise("p", got, want, CTX)
    with pytest.raises(AssertionError, match="dtype float64 != expected float32"):
        assert_bitwise("p", want.astype(np.float64), want)
    # -0.0 and +0.0 differ in bytes (bitwise means bytes) but are 0 ulp apart
    with pytest.raises(AssertionError, match="max 0 ulp"):
        assert_bitwise("z", np.float32([-0.0]), np.float32([0.0]))
    assert_bitwise("p", want, want.copy())


def test_bitwise_reports_scalars():
    """A 0-d array of a multi-byte dtype (a norm, a count) is reported like any other
    tensor: numpy cannot view a 0-d array as bytes of another size, which used to
    escape as a ValueError instead of the report."""
    with pytest.raises(AssertionError, match=r"std: not bitwise equal: 1 of 1 elements differ, max \d+ ulp"):
        assert_bitwise("std", np.array(0.2), np.array(0.02), CTX)
    with pytest.raises(AssertionError, match="n: not bitwise equal: 1 of 1 elements differ"):
        assert_bitwise("n", np.int64(7), np.int64(8))
    assert_bitwise("n", np.int64(7), np.int64(7))


def test_ulp_distance_crosses_zero():
    """The smallest negative and positive subnormals are 2 ulp apart (through -0/+0 = 0)."""
    tiny = np.float32(np.nextafter(np.float32(0), np.float32(1)))
    assert int(ulp_distance(np.float32([-tiny]), np.float32([tiny]))[0]) == 2


def test_bytes_equal_names_the_offset():
    assert_bytes_equal("ckpt", b"FESTE", b"FESTE")
    with pytest.raises(AssertionError, match=r"ckpt: bytes differ at offset 3 \(lengths 5 vs expected 6\)"):
        assert_bytes_equal("ckpt", b"FESXE", b"FESTE!")


def test_rel_norm_with_an_explicit_scale():
    """A zero-in-exact-arithmetic tensor: noise 3e-12 vs 4e-12 measured
    against a related norm of 0.5: ||(3e-12) - (-4e-12)|| / 0.5 = 1.4e-11."""
    metric = assert_rel_norm("k.bias", [3e-12], [-4e-12], 1e-4, scale=0.5, scale_name="||k.weight||")
    assert metric == pytest.approx(1.4e-11)
    with pytest.raises(AssertionError, match=r"k.bias: \|\|got - expected\|\| / \|\|k.weight\|\| = 1.400e-11"):
        assert_rel_norm("k.bias", [3e-12], [-4e-12], 1e-12, scale=0.5, scale_name="||k.weight||")


def test_ulp_distance_of_far_apart_values_warns_nothing():
    """Distances up to -inf..+inf in float64 (just below 2^64) are exact
    uint64 counts, with no overflow warning: the largest finite
    float64 is 0x7FEFFFFFFFFFFFFF, +inf the next pattern, and -x mirrors x
    through the two zeros, which are 0 apart."""
    import warnings

    big = np.finfo(np.float64).max
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = ulp_distance(np.array([-np.inf, -big, -1.0, -0.0, 1e-300]), np.array([np.inf, big, 1.0, 0.0, -1e-300]))
        d32 = ulp_distance(np.float32([-np.inf, 3.0]), np.float32([np.inf, 3.0]))
        with pytest.raises(AssertionError, match=r"max 18437736874454810624 ulp"):
            assert_bitwise("x", np.array([np.inf]), np.array([-np.inf]))
    assert d.dtype == np.uint64
    assert int(d[0]) == 2 * 0x7FF0000000000000 and int(d[1]) == 2 * 0x7FEFFFFFFFFFFFFF
    assert int(d[2]) == 2 * 0x3FF0000000000000 and int(d[3]) == 0
    assert int(d[4]) == 2 * int(np.array(1e-300).view(np.uint64))
    assert [int(x) for x in d32] == [2 * 0x7F800000, 0]


def test_within_ulp_by_hand():
    """[1, 2, -0.0, nan] against [1, nextafter(2, 3) twice, +0.0, nan]: 2 ulp at index 1, -0 and +0 are
    0 apart, NaN matches NaN. Limit 2 passes, 1 fails naming 2 ulp, one element over, index (1,) as plain
    integers and both values; a NaN against a number fails whatever the limit; float64 vs float32 fails."""
    two_up = np.nextafter(np.nextafter(np.float32(2), np.float32(3)), np.float32(3))
    want = np.array([1.0, two_up, 0.0, np.nan], dtype=np.float32)
    got = np.array([1.0, 2.0, -0.0, np.nan], dtype=np.float32)
    assert_within_ulp("lr", got, want, 2)
    with pytest.raises(AssertionError) as info:
        assert_within_ulp("lr", got, want, 1, CTX)
    msg = str(info.value)
    for part in ("lr: 2 ulp > limit 1 ulp, 1 elements over", "worst at index (1,): got 2.0, expected 2.00000",
                 "impl=fast"):
        assert part in msg, (part, msg)
    with pytest.raises(AssertionError, match="a NaN against a number > limit 1e[+]06 ulp"):
        assert_within_ulp("lr", np.float32([np.nan]), np.float32([1.0]), 10**6)
    with pytest.raises(AssertionError, match="dtype float64, expected float32"):
        assert_within_ulp("lr", got.astype(np.float64), want, 2)
