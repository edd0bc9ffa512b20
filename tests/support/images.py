"""Generated class folders of small images for tests that need no real photos."""

from __future__ import annotations

import numpy as np
from PIL import Image


def write_images(folder, names, per_class=2, size=40):
    rng = np.random.default_rng(0)
    for name in names:
        (folder / name).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            c = size // 2  # black and white patches inside the center crop: the full range, as photos have
            pixels[c - 8:c + 8, c - 8:c], pixels[c - 8:c + 8, c:c + 8] = 0, 255
            Image.fromarray(pixels).save(folder / name / f"photo{k}.png")
    return folder
