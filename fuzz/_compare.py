"""Array equality for the fuzz harnesses, written so atheris' instrumentation cannot leak.

atheris traces every `==` the instrumented code runs; tracing `a == b` on numpy
arrays (numpy's own `array_equal` does that) leaked about 3 kB per execution, and
the CAN harness hit libFuzzer's 2 GB RSS limit after ~775,000 executions. Here
arrays are only compared as bytes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["same_array"]


def same_array(a: np.ndarray, b: np.ndarray, *, nan_equal: bool = False) -> bool:
    """Bitwise equal, dtype and shape included (-0.0 vs 0.0 differs); with `nan_equal`, any NaN equals any NaN."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    if nan_equal and a.dtype.kind == "f":
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        return nan_a.tobytes() == nan_b.tobytes() and a[~nan_a].tobytes() == b[~nan_b].tobytes()
    return a.tobytes() == b.tobytes()
