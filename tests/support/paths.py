"""Where things are: the repository root and the shared data folder (../shared, or
EDGEMOBILE_SHARED)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shared_path() -> Path:
    return Path(os.environ.get("EDGEMOBILE_SHARED", ROOT.parent / "shared"))


# The weights of conftest's session-wide ``mobilenet_uint8`` model, for tests that check what it carries.
MOBILENET_UINT8_WEIGHTS = "weights/mobilenet_v1/mobilenet_2_5_224_tf.h5"
