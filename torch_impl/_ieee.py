"""The correctly rounded square root that SPEC §optimiser asks of AdamW, in torch operations.

`torch.sqrt` on CPU is not the IEEE square root: this build computes it with
vector-math routines measured up to 1 ulp off (about 17% of random float32
inputs and 1.3% of float64 ones differ from the correctly rounded result).
Multiplication, division, addition and subtraction are exact IEEE
operations (checked the same way), so only the square root needs this module.

float32: the root is taken in float64 and rounded to float32. That is the
correctly rounded float32 root whenever the float64 root is less than 2 ulp
off: for a float32 x in [4^e, 4^(e+1)) and a float32 midpoint m = M 2^(e-24)
(M odd), x - m^2 is a non-zero multiple of 2^(2e-48) (M^2 is odd), so
|sqrt(x) - m| >= 2^(2e-48) / (sqrt(x) + m) > 2^-51 sqrt(x), more than two
float64 ulps: the float64 estimate lies on the same side of every midpoint
as the exact root. (Checked on every float32 in [1, 4) and 2 million random
bit patterns over all exponents: tests/test_torch_impl.py.)

float64: torch's estimate is corrected by the Tuckerman test: for positive
finite x and y with neighbours y- < y < y+,

    y = RN(sqrt(x))   if and only if   y- * y < x <= y * y+

with the products exact (x differs from the exact product by a multiple of
ulp(y)^2, more than the gap between it and the squared midpoint, so the
products may stand for the squared midpoints; the root of a float is never
a midpoint, so there are no ties). Dekker's product (Veltkamp splitting, no
fused multiply-add) gives p + e = a * b exactly, and x - p is exact
(Sterbenz: p is within a factor 2 of x), so the sign of x - a * b is the
sign of (x - p) - e. Inputs are first scaled by an even power of two into
a range where no product overflows or loses bits to underflow (scaling by
powers of two is exact, and sqrt(4^k x) = 2^k sqrt(x)).
"""
from __future__ import annotations

import math

import torch

# Veltkamp splitting constant for float64 (53-bit significand): 2^27 + 1
_SPLIT_F64 = 134217729.0
# float64 inputs outside [2^-500, 2^500] are scaled by 4^-300 or 4^300 into it
_TINY, _HUGE, _SCALE_EXP = 2.0 ** -500, 2.0 ** 500, 300
# rounds of correction: torch's estimate is at most 1 ulp off (measured); each
# round moves a wrong element one ulp, and a round that changes nothing ends it
_MAX_ROUNDS = 4


def _split(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Veltkamp: a = hi + lo exactly, hi and lo with at most 26 significant bits each."""
    c = a * _SPLIT_F64
    hi = c - (c - a)
    return hi, a - hi


def _two_prod(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dekker: p = fl(a * b) and e with p + e = a * b exactly (float64; torch
    multiplies and subtracts one rounding at a time, nothing fused)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _sign_of_x_minus_product(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sign(x - a*b) with a*b unrounded, per element (float64, a*b within a
    factor 2 of x, every value in the scaled range)."""
    p, e = _two_prod(a, b)
    return torch.sign((x - p) - e)  # x - p exact (Sterbenz); one rounding keeps the sign


def sqrt_rn_(x: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """x = sqrt(x) in place, correctly rounded to nearest (float32 or float64,
    x >= 0). `scratch`: a float64 tensor of x's size for the float32 root
    (allocated when not given). Returns x."""
    if x.dtype == torch.float32:
        wide = torch.empty(x.shape, dtype=torch.float64) if scratch is None else scratch
        wide.copy_(x)
        torch.sqrt(wide, out=wide)
        return x.copy_(wide)  # one rounding to float32: right by the argument above
    return x.copy_(sqrt_rn(x))


def sqrt_rn(x: torch.Tensor) -> torch.Tensor:
    """sqrt(x), correctly rounded to nearest, for a float32 or float64 tensor
    (x >= 0; 0, +inf and NaN pass through as torch.sqrt gives them). A new tensor."""
    if x.dtype == torch.float32:
        return sqrt_rn_(x.clone())
    small, large = x < _TINY, x > _HUGE
    x = torch.where(small, x * 4.0 ** _SCALE_EXP, torch.where(large, x * 4.0 ** -_SCALE_EXP, x))
    y = torch.sqrt(x)
    finite = (x > 0) & torch.isfinite(x)
    up_limit, down_limit = torch.full_like(y, math.inf), torch.zeros_like(y)
    for _ in range(_MAX_ROUNDS):
        y_up, y_down = torch.nextafter(y, up_limit), torch.nextafter(y, down_limit)
        too_small = finite & (_sign_of_x_minus_product(x, y, y_up) > 0)  # x > y * y+
        too_large = finite & (_sign_of_x_minus_product(x, y_down, y) <= 0)  # x <= y- * y
        if not (too_small.any() or too_large.any()):
            break
        y = torch.where(too_small, y_up, torch.where(too_large, y_down, y))
    else:
        raise ArithmeticError(f"sqrt_rn: torch.sqrt was more than {_MAX_ROUNDS - 1} ulp off")
    return torch.where(small, y * 2.0 ** -_SCALE_EXP, torch.where(large, y * 2.0 ** _SCALE_EXP, y))
