"""The process' resident memory: its current size, its peak, and resetting the peak (Linux)."""

from __future__ import annotations

import sys

try:
    import resource
except ImportError:  # not on Windows
    resource = None


def status_kb(key: str) -> int | None:
    """A ``/proc/self/status`` field in kB (``VmRSS``, ``VmHWM``); None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the process' RSS high-water mark (Linux ≥ 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_kb(reset: bool = False) -> tuple[int | None, str]:
    """The process' peak resident set (kB) and how it was measured; ``reset``: whether
    :func:`reset_peak_rss` cleared the high-water mark before."""
    hwm = status_kb("VmHWM")
    if hwm is not None:
        return hwm, "VmHWM (reset per setting)" if reset else "VmHWM (process peak)"
    if resource is None:
        return None, "unavailable"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak // 1024 if sys.platform == "darwin" else peak), "getrusage"
