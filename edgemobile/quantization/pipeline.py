"""Full-integer conversion: calibration images loaded once, the recipe run by the engine
(:mod:`.engine`), then the converter (:mod:`.tflite_converter`) with the engine's statistics
hook (or exact min/max ranges without one).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import numpy as np

from edgemobile.data.prefetch import prefetch_map
from edgemobile.errors import EdgeMobileError
from edgemobile.progress import Progress
from edgemobile.quantization.engine import prepare, replay
from edgemobile.quantization.exact_ranges import exact_minmax_hook
from edgemobile.quantization.simulate import restore
from edgemobile.quantization.techniques.recipe import DEFAULT, Recipe
from edgemobile.quantization.tflite_converter import convert_keras, quantize_calibrated
from edgemobile.runtime.interpreter import model_ops, tensor_inspector
from edgemobile.tflite.model import constant_spans

CALIBRATION_BATCH = 16  # images per step of the converter's own calibration pass


def load_images(paths, spec, progress: bool = True, desc: str = "loading calibration images") -> np.ndarray:
    """Calibration images prepared by ``spec``, decoded once into one (N, H, W, 3) array."""
    paths = list(paths)
    bar = Progress(len(paths), desc) if progress else None
    out = None
    for k, x in enumerate(prefetch_map(spec, paths)):
        if out is None:
            out = np.empty((len(paths), *x.shape), np.float32)
        out[k] = x
        if bar:
            bar.update()
    if bar:
        bar.close()
    if out is None:
        raise EdgeMobileError("no calibration images")
    return out


@dataclasses.dataclass
class FullInteger:
    tflite: bytes
    calibrated: bytes  # the calibrated float model the int8 model was quantized from
    report: dict
    model: Any = None  # the Keras model converted
    float_weights: dict | None = None  # see engine.Prepared
    ranged: bytes = b""  # ``calibrated`` with the statistics the int8 model was quantized from
    precision: str = "int8"
    _float_tflite: bytes | None = None
    _float_constants: dict | None = None

    def keeping_float(self, tensors: Sequence[str]) -> bytes:
        """The model quantized from the same statistics, the ops writing ``tensors`` (the
        calibrated model's tensor names) kept float (:func:`.tflite_converter.quantize_calibrated`)
        with the float model's weights: bias correction, AdaRound and fine-tuning shaped the
        converted weights for int8 arithmetic, which those ops no longer do."""
        if not tensors:
            return quantize_calibrated(self.ranged, self.precision, ())
        if self._float_constants is None:
            self._float_constants = float_constants(self.ranged, self.float_tflite())
        ranged = bytearray(self.ranged)
        for tensor in tensors:
            for start, data in self._float_constants.get(tensor, ()):
                ranged[start:start + len(data)] = data
        return quantize_calibrated(bytes(ranged), self.precision, tensors)

    def float_reference(self):
        """The Keras model whose float function the int8 model quantizes: the input model
        after the function-preserving rewrites (``report["rewrites"]``), whose channels match
        the int8 model's tensors one to one — the converted model with its conv/dense weights
        from before bias correction and AdaRound put back (so call it after conversion)."""
        if self.float_weights is not None:
            restore(self.model, self.float_weights)
            self.float_weights = None
        return self.model

    def float_tflite(self) -> bytes:
        """:meth:`float_reference` as a float TFLite model with the int8 model's graph: the
        calibrated model itself when nothing moved the weights after the rewrites, else a
        float conversion."""
        if self._float_tflite is None:
            self._float_tflite = self.calibrated if self.float_weights is None else \
                convert_keras(self.float_reference(), "float32")
        return self._float_tflite


def float_constants(calibrated: bytes, float_model: bytes) -> dict[str, list[tuple[int, bytes]]]:
    """Op output tensor name → (offset in ``calibrated``, bytes) of the constant inputs
    (weights, biases) ``float_model`` — a float conversion with the same graph, ops paired in
    order — has for that op; empty when the graphs differ."""
    inspector = tensor_inspector(calibrated)
    ops, float_ops = model_ops(inspector), model_ops(tensor_inspector(float_model))
    if [op["op_name"] for op in ops] != [op["op_name"] for op in float_ops]:
        return {}
    names = {int(t["index"]): t["name"] for t in inspector.get_tensor_details()}
    spans, float_spans = constant_spans(calibrated), constant_spans(float_model)
    found: dict[str, list[tuple[int, bytes]]] = {}
    for op, float_op in zip(ops, float_ops):
        pairs = [(spans[t], float_spans[ft]) for t, ft in zip(map(int, op["inputs"]), map(int, float_op["inputs"]))
                 if t in spans and ft in float_spans and spans[t][1] == float_spans[ft][1]]
        found[names[int(op["outputs"][0])]] = [(start, bytes(float_model[f_start:f_start + length]))
                                               for (start, length), (f_start, _) in pairs]
    return found


def convert_full_integer(model, precision: str, images: np.ndarray, options: Recipe = DEFAULT,
                         progress: bool = True, spec=None) -> FullInteger:
    """``model`` → all-integer TFLite.

    Args:
        model: a Keras model.
        precision: "int8" or "uint8" (input and output type).
        images: calibration images, normalized by ``spec``.
        options: the recipe of techniques (see :mod:`.techniques.recipe`).
        progress: show progress bars.
        spec: the model's PreprocessSpec (see :func:`edgemobile.quantization.engine.prepare`).
    """
    start = time.perf_counter()
    replayed = replay(images)
    prepared = prepare(model, images, options, replayed, progress, spec)
    # A range hook measures every statistic itself on a replay of all the images (see
    # ranges.apply_ranges): the converter's calibration then only has to record its slots.
    fed = images if prepared.calibrated_hook is None else images[:CALIBRATION_BATCH]

    def calibrate():  # the converter's calibration pass, batched, with a progress bar
        # The calibrator sizes its input once, from the first batch: the last batch is
        # filled up with images already seen (it records min/max only, which repeats keep).
        # Behind a range hook this pass only records the statistic slots on a few images; the
        # hook's replay of all of them is the calibration the user sees counted.
        bar = Progress(len(fed), "calibrating") if progress and prepared.calibrated_hook is None else None
        batch = min(CALIBRATION_BATCH, len(fed))
        for i in range(0, len(fed), batch):
            chunk = fed[i:i + batch]
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, fed[: batch - len(chunk)]])
            yield [chunk]
            if bar:
                bar.update(min(batch, len(fed) - i))
        if bar:
            bar.close()

    captured: dict[str, bytes] = {}

    def hook(calibrated: bytes) -> bytes:
        captured["calibrated"] = calibrated
        chosen = prepared.calibrated_hook or exact_minmax_hook(replayed)
        captured["ranged"] = chosen(calibrated)
        return captured["ranged"]

    tflite = convert_keras(prepared.model, precision, calibrate, hook)
    report = dict(prepared.report, calibration_images=int(len(images)),
                  seconds=round(time.perf_counter() - start, 2))
    return FullInteger(tflite, captured["calibrated"], report, prepared.model, prepared.float_weights,
                       captured["ranged"], precision)
