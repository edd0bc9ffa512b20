"""Quantize a float .tflite with Google's ``litert-quantizer`` — the peer rows of
``tools/accuracy_table.py``.

    python tools/litert_quantizer_peer.py FLOAT.tflite CALIB.npy {a8w8,octav} OUT.tflite

Runs in its own environment: ``litert-quantizer`` (PyPI) pins its own ``ai-edge-litert``
and is never part of edgemobile's runtime or convert installs, e.g.::

    python3.11 -m venv ../venv-litert-quantizer
    ../venv-litert-quantizer/bin/pip install litert-quantizer

``accuracy_table.py --litert-python ../venv-litert-quantizer/bin/python`` then calls this
script with that interpreter. It imports nothing from edgemobile (no TensorFlow either).

Recipes: ``a8w8`` — the package's default static int8 recipe (``recipe.static_wi8_ai8()``,
the same as ``recipes/default_a8w8_recipe.json``: per-tensor asymmetric min/max activations,
per-channel symmetric int8 weights); ``octav`` — the same recipe with the OCTAV algorithm
(optimal clipping of each tensor's range). ``CALIB.npy``: the calibration images, already
normalized (N, H, W, 3) float32 — the same images edgemobile calibrates on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[2] not in ("a8w8", "octav"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    float_path, calib_path, method, out_path = argv
    from litert_quantizer import quantizer, recipe
    from litert_quantizer.algorithm_manager import AlgorithmName
    from litert_quantizer.utils import tfl_interpreter_utils

    key = AlgorithmName.MIN_MAX_UNIFORM_QUANT if method == "a8w8" else AlgorithmName.OCTAV
    qt = quantizer.Quantizer(str(float_path))
    qt.load_quantization_recipe(recipe.static_wi8_ai8(algorithm_key=key))
    interpreter = tfl_interpreter_utils.create_tfl_interpreter(Path(float_path).read_bytes())
    signature = tfl_interpreter_utils.DEFAULT_SIGNATURE_KEY
    (input_name,) = interpreter.get_signature_list()[signature]["inputs"]
    images = np.load(calib_path, mmap_mode="r")
    samples = [{input_name: np.asarray(x[None], np.float32)} for x in images]
    calibration = qt.calibrate({signature: samples}, num_threads=2)
    result = qt.quantize(calibration, enable_progress_report=False)
    tmp = Path(out_path).with_suffix(".partial")
    tmp.write_bytes(bytes(result.quantized_model))
    tmp.replace(out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
