"""What "the same call signature" means for the contract (SPEC §contract,
docs/CHECKING_AN_IMPLEMENTATION.md "The contract"): names, kinds and defaults, never annotations."""
from __future__ import annotations

import inspect


def signature_of(obj) -> str:
    """The call signature as written, without annotations (what the contract compares)."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "<no signature>"
    return str(sig.replace(parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
                           return_annotation=sig.empty))


def _same_default(a, b) -> bool:
    """Defaults are equal when `a == b` holds (1 and 1.0, np.float32 and
    np.dtype("float32")), except that a bool only equals a bool."""
    if a is b:
        return True
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    try:
        return bool(a == b)
    except Exception:  # an object whose == does not give one truth value
        return False


def signature_mismatch(got, want) -> str | None:
    """Why the call signature of `got` differs from the contract's `want`, or
    None. Compared, in order (docs/CHECKING_AN_IMPLEMENTATION.md "The
    contract"): the parameter names,
    their kinds (positional-only, positional-or-keyword, *args, keyword-only,
    **kwargs) and their defaults (present or absent, and equal by `==`, a
    bool only to a bool). Annotations are not compared: they change no call."""
    try:
        g, w = inspect.signature(got).parameters, inspect.signature(want).parameters
    except (TypeError, ValueError) as exc:
        return f"has no inspectable signature ({exc})"
    if list(g) != list(w):
        return f"takes parameters ({', '.join(g)}), the contract ({', '.join(w)})"
    for name, wp in w.items():
        gp = g[name]
        if gp.kind != wp.kind:
            return f"parameter {name!r} is {gp.kind.description}, the contract's is {wp.kind.description}"
        if (gp.default is gp.empty) != (wp.default is wp.empty):
            has = "has no default" if gp.default is gp.empty else f"has default {gp.default!r}"
            want_text = "none" if wp.default is wp.empty else repr(wp.default)
            return f"parameter {name!r} {has}, the contract's default is {want_text}"
        if wp.default is not wp.empty and not _same_default(gp.default, wp.default):
            return f"parameter {name!r} has default {gp.default!r}, the contract's is {wp.default!r}"
    return None
