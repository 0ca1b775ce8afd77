"""Comparing floats computed by different code paths.

A floating-point sum's last bits depend on the order of its terms, and that order
depends on the CPU's SIMD path (AMD and Intel differ): results of two code paths (Keel
and scipy, say) agree to ~1e-15 relative, not to the bit. Compare them with this.
"""

from __future__ import annotations

import math

REL = 1e-12


def same_float(found: float, expected: float, rel: float = REL) -> bool:
    """``found`` equals ``expected`` within ``rel`` relative (exactly for 0, inf, NaN)."""
    found, expected = float(found), float(expected)
    if math.isnan(expected):
        return math.isnan(found)
    if math.isinf(expected) or expected == 0.0:
        return found == expected
    return math.isclose(found, expected, rel_tol=rel, abs_tol=0.0)


def same_p_value(found: float, expected: float) -> bool:
    """Drift p-values: within 1e-6 relative or 1e-9 absolute, whichever is looser.

    Below 1e-10 Keel reports the Dvoretzky–Kiefer–Wolfowitz bound instead of summing
    scipy's exact tail (0.4 s for a shifted column of 500,000 rows); any verdict at an
    alpha above 1e-9 is the same.
    """
    found, expected = float(found), float(expected)
    return abs(found - expected) <= max(1e-6 * abs(expected), 1e-9)
