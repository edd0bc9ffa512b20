"""Moved to :mod:`edgemobile.data.prefetch` (issue 24: no two modules named ``pipeline``).

Kept only until ``edgemobile/quantization/`` (being rebuilt separately) imports
``edgemobile.data.prefetch``; delete this file then.
"""

from edgemobile.data.prefetch import default_workers, prefetch_map

__all__ = ["default_workers", "prefetch_map"]
