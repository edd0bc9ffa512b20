"""Post-training techniques that make full-int8 conversion nearly lossless, composed.

Every technique works on the Keras model or on the calibration statistics *before* the
converter quantizes, so the result is a standard all-integer TFLite model:

=================  ====================================================================
``ranges``         activation-range selection (:mod:`.ranges`): ``minmax`` (converter
                   default), ``percentile`` or ``mse``; reaches the converter as
                   calibration statistics
``equalize``       cross-layer equalization (:mod:`.equalization`) of conv → ReLU → conv
                   pairs, stretching narrow activation channels
``bias_correction``  empirical bias correction (:mod:`.bias_correction`): each layer's mean
                   output shift under quantization, measured on calibration images through
                   a simulation of the int8 model (:mod:`.simulate`), removed from its bias
``adaround``       learned up/down rounding of every weight on the converter's own int8
                   grid (:mod:`.adaround`)
=================  ====================================================================

Order: BatchNorm folding (always, when any technique runs — the converter folds the same
way), equalization, then one sequential pass over the layers in which each conv/dense layer
is AdaRounded and bias-corrected against the float model, given the inputs the
already-quantized layers before it produce; the range choice shapes that simulation and is
finally handed to the converter.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import numpy as np

from edgemobile.errors import EdgeMobileError, first_line

RANGE_CHOICES = ("minmax", "percentile", "mse")
DEFAULT_TECHNIQUE_IMAGES = 256


@dataclasses.dataclass(frozen=True)
class QuantOptions:
    """Which techniques a full-integer conversion uses (defaults: the best combination)."""

    ranges: str = "mse"
    equalize: bool = True
    bias_correction: bool = True
    adaround: bool = True
    technique_images: int = DEFAULT_TECHNIQUE_IMAGES  # calibration images used by the Keras-side passes
    adaround_iterations: int = 500

    def __post_init__(self) -> None:
        if self.ranges not in RANGE_CHOICES:
            raise EdgeMobileError(f"unknown range method {self.ranges!r}; choose from {', '.join(RANGE_CHOICES)}")
        if self.technique_images < 1 or self.adaround_iterations < 1:
            raise EdgeMobileError("technique images and AdaRound iterations must be positive")

    @classmethod
    def plain(cls) -> "QuantOptions":
        """The converter alone: min/max ranges, no technique."""
        return cls(ranges="minmax", equalize=False, bias_correction=False, adaround=False)

    @property
    def keras_side(self) -> bool:
        """True when the Keras model is changed before conversion."""
        return self.equalize or self.bias_correction or self.adaround

    @property
    def active(self) -> bool:
        return self.keras_side or self.ranges != "minmax"

    def label(self) -> str:
        parts = [f"{self.ranges} ranges"] if self.ranges != "minmax" else []
        parts += [name for name, on in (("equalization", self.equalize), ("bias correction", self.bias_correction),
                                        ("AdaRound", self.adaround)) if on]
        return " + ".join(parts) if parts else "plain converter (min/max)"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


DEFAULT = QuantOptions()


@dataclasses.dataclass
class Prepared:
    """A model ready for the converter and the statistics hook that goes with it."""

    model: Any
    calibrated_hook: Callable[[bytes], bytes] | None
    report: dict
    # ``model``'s conv/dense weights before bias correction and AdaRound moved them towards
    # the int8 grid (None when they did not run): see FullInteger.float_reference
    float_weights: dict | None = None


def prepare(model, images: np.ndarray, options: QuantOptions, representative: Callable | None = None,
            progress: bool = True, spec=None) -> Prepared:
    """Apply ``options`` to a Keras ``model`` using calibration ``images`` (normalized, NHWC).

    ``representative`` is the converter's calibration generator; the range hook replays it
    (default: ``images`` in batches). ``spec``: the model's PreprocessSpec, so the
    simulation feeds the quantized model what a device does (raw pixels for MobileNet's
    [-1, 1] input: half a step off the normalized input, which bias correction then removes;
    see :func:`edgemobile.quantization.simulate.device_input`). The input ``model`` is left
    untouched."""
    images = np.asarray(images, np.float32)
    report: dict[str, Any] = {"techniques": options.label(), "options": options.as_dict()}
    start = time.perf_counter()
    float_weights = None
    report["rewrites"] = []  # the function-preserving ones (see _keras_side)
    if options.keras_side:
        x = images[: options.technique_images]
        report["technique_images"] = int(len(x))
        skipped: list[str] = []  # one line per pattern a technique left alone, and why (see guards)
        model, float_weights = _keras_side(model, x, options, progress, spec, report, skipped)
        report["skipped"] = skipped
    report["keras_seconds"] = round(time.perf_counter() - start, 2)
    hook = None
    if options.ranges != "minmax":
        hook = _range_hook(options.ranges, representative or _replay(images), report,
                           len(images) if progress else 0)  # one replay
    return Prepared(model, hook, report, float_weights)


def _keras_side(model, x, options: QuantOptions, progress: bool, spec, report: dict, skipped: list[str]):
    """BatchNorm folding, equalization and the sequential pass on a copy of ``model``; what
    they cannot handle is skipped with a message in ``skipped``, and a rewrite that changes the
    float function, or a technique that fails on an unfamiliar pattern, is dropped (the
    original model, or the one before that technique, goes on to the converter).

    Returns ``(model, float weights)``: the latter are the conv/dense weights after the
    function-preserving rewrites (folding, equalization; named in ``report["rewrites"]``),
    before the sequential pass changed them (None when it did not run)."""
    from edgemobile.quantization import graph as G
    from edgemobile.quantization import guards

    why = guards.single_io(model)
    if why is not None:
        skipped.append(f"all Keras-side techniques: {why}")
        return model, None
    check = guards.FloatCheck(model, x)
    try:
        folded = G.fold_batchnorm(model)
        same, err = check.keeps(folded)
    except Exception as exc:  # a layer the rebuild cannot copy: convert the model as it is
        skipped.append(f"all Keras-side techniques: the model could not be rebuilt for them ({_first_line(exc)})")
        return model, None
    if not same:
        skipped.append(f"all Keras-side techniques: BatchNorm folding (and inlining nested models, splitting "
                       f"separable convs) changed the float outputs by {err:.2g} (relative), so the model is "
                       "converted as it is")
        return model, None
    model = folded
    report["rewrites"].append("BatchNorm folding")
    skipped += guards.unmodeled_layers(model)
    if options.equalize:
        from edgemobile.quantization.equalization import equalize
        from edgemobile.quantization.simulate import restore, snapshot

        before = snapshot(model)
        try:
            done = equalize(model, x)
            same, err = check.keeps(model)
            failure = None if same else f"it changed the float outputs by {err:.2g} (relative)"
        except Exception as exc:
            done, failure = [], f"it failed on this model ({_first_line(exc)})"
        if failure:
            restore(model, before)
            skipped.append(f"equalization: dropped, {failure}")
        else:
            report["equalization"] = [d.as_dict() for d in done]
            report["rewrites"].append("equalization")
    if options.bias_correction or options.adaround:
        from edgemobile.quantization.simulate import restore, snapshot
        from edgemobile.quantization.stream import sequential_pass

        shared = guards.shared_layers(model)
        skipped += [f"{name}: called more than once (a shared layer): no bias correction or AdaRound for it"
                    for name in sorted(shared)]
        before = snapshot(model)
        try:
            report["layers"] = sequential_pass(model, x, options, progress, spec, skip=shared)
            return model, before
        except Exception as exc:
            restore(model, before)
            skipped.append(f"bias correction and AdaRound: dropped, they failed on this model ({_first_line(exc)})")
    return model, None


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of a technique's exception (the type alone when it has no message)."""
    return f"{type(exc).__name__}: {first_line(exc)[:200]}" if str(exc).strip() else type(exc).__name__


REPLAY_BATCH = 8  # images per invoke when the calibrated model is replayed (ranges, exact min/max)
CALIBRATION_BATCH = 16  # images per step of the converter's own calibration pass


def _replay(images: np.ndarray, batch: int = REPLAY_BATCH) -> Callable:
    return lambda: ([images[i:i + batch]] for i in range(0, len(images), batch))


def _range_hook(method: str, representative: Callable, report: dict, bar_total: int) -> Callable[[bytes], bytes]:
    from edgemobile.progress import Progress
    from edgemobile.quantization.ranges import apply_ranges

    def hook(calibrated: bytes) -> bytes:
        start = time.perf_counter()
        # The replay of every calibration image: the calibration the user asked for.
        bar = Progress(bar_total, f"calibrating ({method} ranges)") if bar_total else None
        out, rows = apply_ranges(calibrated, representative, method, progress=bar)
        if bar:
            bar.close()
        changed = [r for r in rows if tuple(np.round(r.calibrated, 6)) != tuple(np.round(r.chosen, 6))]
        report["ranges"] = {"method": method, "tensors": len(rows), "changed": len(changed),
                            "changes": [r.as_dict() for r in changed],
                            "seconds": round(time.perf_counter() - start, 2)}
        return out

    return hook


# -- conversion --------------------------------------------------------------------------------


def load_images(paths, spec, progress: bool = True, desc: str = "loading calibration images") -> np.ndarray:
    """Calibration images prepared by ``spec``, decoded once into one (N, H, W, 3) array."""
    from edgemobile.data.pipeline import prefetch_map
    from edgemobile.progress import Progress

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
    float_weights: dict | None = None  # see Prepared

    def float_reference(self):
        """The Keras model whose float function the int8 model quantizes: the input model
        after the function-preserving rewrites (``report["rewrites"]``), whose channels match
        the int8 model's tensors one to one — the converted model with its conv/dense weights
        from before bias correction and AdaRound put back (so call it after conversion)."""
        if self.float_weights is not None:
            from edgemobile.quantization.simulate import restore

            restore(self.model, self.float_weights)
            self.float_weights = None
        return self.model

    def float_tflite(self) -> bytes:
        """:meth:`float_reference` as a float TFLite model with the int8 model's graph: the
        calibrated model itself when nothing moved the weights after the rewrites, else a
        float conversion."""
        if self.float_weights is None:
            return self.calibrated
        from edgemobile.quantization.tflite_converter import convert_keras

        return convert_keras(self.float_reference(), "float32")


def convert_full_integer(model, precision: str, images: np.ndarray, options: QuantOptions = DEFAULT,
                         progress: bool = True, spec=None) -> FullInteger:
    """``model`` → all-integer TFLite with ``options``, calibrated on ``images`` (prepared by
    ``spec``, the model's PreprocessSpec: see :func:`prepare`)."""
    from edgemobile.progress import Progress
    from edgemobile.quantization.tflite_converter import convert_keras
    from edgemobile.quantization.exact_ranges import exact_minmax_hook

    start = time.perf_counter()
    replay = _replay(images)
    prepared = prepare(model, images, options, replay, progress, spec)
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
        if prepared.calibrated_hook is not None:
            return prepared.calibrated_hook(calibrated)
        return exact_minmax_hook(replay)(calibrated)

    tflite = convert_keras(prepared.model, precision, calibrate, hook)
    report = dict(prepared.report, calibration_images=int(len(images)),
                  seconds=round(time.perf_counter() - start, 2))
    return FullInteger(tflite, captured["calibrated"], report, prepared.model, prepared.float_weights)
