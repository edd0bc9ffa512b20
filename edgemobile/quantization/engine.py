"""The quantization engine: runs a recipe (:mod:`.techniques.recipe`) on a Keras model before
the converter quantizes it, so the result is a standard all-integer TFLite model.

Order, whatever the recipe's order (which orders steps of the same kind):

1. when a technique changes the Keras model: BatchNorm folding on a copy (the converter folds
   the same way), kept only if the float function is unchanged, and the guards
   (:mod:`.guards`) that skip patterns the techniques do not model;
2. whole-model steps before the layer pass (equalization), each checked by the float check
   when it claims to keep the float function, and dropped if it fails or changes it;
3. one streamed sequential pass (:mod:`.stream`) when a technique has per-layer steps: the
   float stream gathers exactly the statistics the techniques declared, kernel steps
   (AdaRound) run on a second thread ahead of the int8 stream, which applies each layer's
   stream steps (bias correction) with the layers before it already quantized;
4. whole-model steps after the layer pass (fine-tuning);
5. converter steps: hooks on the calibrated flatbuffer (the range choice).

What a technique cannot handle is skipped with a one-line message in the report's
``skipped``; a technique that fails on an unfamiliar pattern is dropped, and the model before
it goes on to the converter.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import numpy as np

from edgemobile.errors import first_line
from edgemobile.progress import Progress
from edgemobile.quantization import graph, guards
from edgemobile.quantization.simulate import restore, snapshot
from edgemobile.quantization.stream import CHUNK, Int8Stream, chunks, gather_float_statistics
from edgemobile.quantization.techniques.base import ConverterContext, LayerContext, ModelContext, Statistic
from edgemobile.quantization.techniques.recipe import Recipe

REPLAY_BATCH = 8  # images per invoke when the calibrated model is replayed (ranges, exact min/max)


@dataclasses.dataclass
class Prepared:
    """A model ready for the converter and the statistics hook that goes with it."""

    model: Any
    calibrated_hook: Callable[[bytes], bytes] | None
    report: dict
    # ``model``'s conv/dense weights before the per-layer and after-layer steps moved them
    # towards the int8 grid (None when none ran): see pipeline.FullInteger.float_reference
    float_weights: dict | None = None


def replay(images: np.ndarray, batch: int = REPLAY_BATCH) -> Callable:
    """A representative-dataset generator over ``images`` in batches (the converter's form).

    Args:
        images: normalized NHWC images.
        batch: images per batch.
    """
    return lambda: ([images[i:i + batch]] for i in range(0, len(images), batch))


def prepare(model, images: np.ndarray, recipe: Recipe, representative: Callable | None = None,
            progress: bool = True, spec=None) -> Prepared:
    """Run ``recipe`` on a copy of the Keras ``model`` (left untouched).

    Args:
        model: a Keras model.
        images: calibration images (normalized, NHWC); the Keras-side techniques use the first
            ``recipe.technique_images``.
        recipe: the techniques to run.
        representative: the converter's calibration generator, which converter steps replay
            (default: ``images`` in batches).
        progress: show progress bars.
        spec: the model's PreprocessSpec, so the int8 simulation is fed what a device feeds
            (raw pixels for MobileNet's [-1, 1] input: half a step off the normalized input,
            which bias correction then removes; see
            :func:`edgemobile.quantization.simulate.device_input`).
    """
    images = np.asarray(images, np.float32)
    report: dict[str, Any] = {"techniques": recipe.label(), "options": recipe.as_dict()}
    start = time.perf_counter()
    float_weights = None
    report["rewrites"] = []  # the function-preserving ones that ran (BatchNorm folding, equalization)
    if recipe.keras_side:
        skipped: list[str] = []  # one line per pattern a technique left alone, and why (see guards)
        model, float_weights = _keras_side(model, images, recipe, progress, spec, report, skipped)
        report["skipped"] = skipped
    report["keras_seconds"] = round(time.perf_counter() - start, 2)
    context = ConverterContext(representative or replay(images), report, len(images) if progress else 0, model)
    hooks = [technique.converter_step(context, options) for technique, options in recipe.techniques()
             if technique.converter_step is not None]
    return Prepared(model, _chained(hooks), report, float_weights)


def _chained(hooks: list[Callable[[bytes], bytes]]) -> Callable[[bytes], bytes] | None:
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]

    def hook(calibrated: bytes) -> bytes:
        for step in hooks:
            calibrated = step(calibrated)
        return calibrated

    return hook


def _keras_side(model, images, recipe: Recipe, progress: bool, spec, report: dict, skipped: list[str]):
    """Steps 1-4 of the module docstring on a copy of ``model``. Returns ``(model for the
    converter, float weights)``: the latter are its conv/dense weights after the
    function-preserving rewrites (named in ``report["rewrites"]``), before the layer pass and
    after-layer steps changed them (None when none ran)."""
    x = images[: recipe.technique_images]
    report["technique_images"] = int(len(x))
    why = guards.single_io(model)
    if why is not None:
        skipped.append(f"all Keras-side techniques: {why}")
        return model, None
    check = guards.FloatCheck(model, x)
    try:
        folded = graph.fold_batchnorm(model)
        same, err = check.keeps(folded)
    except Exception as exc:  # a layer the rebuild cannot copy: convert the model as it is
        skipped.append(f"all Keras-side techniques: the model could not be rebuilt for them ({_first_line(exc)})")
        return model, None
    if not same:
        skipped.append(f"all Keras-side techniques: BatchNorm folding (and inlining nested models, splitting "
                       f"separable convs) changed the float outputs by {err:.2g} (relative), so the model is "
                       "converted as it is")
        return model, None
    report["rewrites"].append("BatchNorm folding")
    float_model = model
    model = folded
    skipped += guards.unmodeled_layers(model)
    context = ModelContext(model, float_model, x, spec, progress, recipe, calibration_images=images)
    for technique, options in recipe.techniques():
        if technique.before_layers is not None:
            _model_step(technique, options, context, check, report, skipped, technique.before_layers)
    # The weights the later steps move towards the int8 grid: the float reference, and what a
    # failed layer pass restores.
    moves_weights = any(t.layer_steps or t.after_layers is not None for t, _ in recipe.techniques())
    float_weights = snapshot(model) if moves_weights else None
    layer_techniques = [(technique, options) for technique, options in recipe.techniques() if technique.layer_steps]
    if layer_techniques or Statistic.ACTIVATION_RANGES in recipe.needs:  # the pass also measures the ranges
        shared = guards.shared_layers(model)
        either = " or ".join(technique.describe(options) for technique, options in layer_techniques)
        skipped += [f"{name}: called more than once (a shared layer): no {either} for it"
                    for name in sorted(shared) if layer_techniques]
        before = float_weights if float_weights is not None else snapshot(model)
        try:
            rows, ranges = layer_pass(model, x, recipe, progress, spec, skip=shared)
            if layer_techniques:
                report["layers"] = rows
            context = dataclasses.replace(context, activation_ranges=ranges, float_weights=before)
        except Exception as exc:
            restore(model, before)
            named = layer_techniques or [(t, o) for t, o in recipe.techniques()
                                         if Statistic.ACTIVATION_RANGES in t.needs]
            they = "they" if len(named) > 1 else "it"
            labels = " and ".join(technique.describe(options) for technique, options in named)
            skipped.append(f"{labels}: dropped, {they} failed on this model ({_first_line(exc)})")
    for technique, options in recipe.techniques():
        if technique.after_layers is not None:
            _model_step(technique, options, context, check, report, skipped, technique.after_layers)
    return model, float_weights


def _model_step(technique, options, context: ModelContext, check, report: dict, skipped: list[str], step) -> None:
    """One whole-model step, undone (and reported) if it fails or changes the float function
    it claims to keep."""
    before = snapshot(context.model)
    try:
        done = step(context, options)
        failure = None
        if technique.keeps_float_function:
            same, err = check.keeps(context.model)
            failure = None if same else f"it changed the float outputs by {err:.2g} (relative)"
    except Exception as exc:
        done, failure = None, f"it failed on this model ({_first_line(exc)})"
    if failure:
        restore(context.model, before)
        skipped.append(f"{technique.describe(options)}: dropped, {failure}")
        return
    if technique.keeps_float_function:
        report["rewrites"].append(technique.describe(options))
    if done is not None:
        report[technique.name] = done


def layer_pass(model, x: np.ndarray, recipe: Recipe, progress: bool = True, spec=None,
               skip: set[str] = frozenset()) -> tuple[list[dict], dict[str, tuple[float, float]]]:
    """The recipe's per-layer steps on every conv/dense layer of the BatchNorm-folded ``model``,
    in place (step 3 of the module docstring).

    Args:
        model: the BatchNorm-folded Keras model.
        x: the technique images (normalized, NHWC).
        recipe: the recipe (its layer steps run, in its order).
        progress: show a progress bar.
        spec: the model's PreprocessSpec (device input encoding of the int8 stream).
        skip: layer names left as they are (the int8 stream runs them unrounded).

    Returns a row per layer and the activation ranges chosen (empty unless gathered).
    """
    steps = [(technique, options) for technique, options in recipe.techniques() if technique.layer_steps]
    kernel_steps = [(t.kernel_step, options) for t, options in steps if t.kernel_step is not None]
    stream_steps = [(t.stream_step, options) for t, options in steps if t.stream_step is not None]
    needs = recipe.needs
    streamed = Statistic.INT8_MEANS in needs or bool(stream_steps)
    linear = {layer.name: layer for layer in graph.linear_layers(model) if layer.name not in skip}
    parts = chunks(len(x), CHUNK)
    bar = Progress(len(parts) + len(linear) * (2 if streamed else 1), "quantizing layers",
                   unit="step") if progress else None
    tick = bar.update if bar else lambda: None
    statistics = gather_float_statistics(model, x, linear, needs, recipe.range_method, on_chunk=tick)
    rows: dict[str, dict[str, Any]] = {name: {"layer": name, "kind": layer.kind} for name, layer in linear.items()}

    def kernel(name: str) -> None:
        context = LayerContext(linear[name], recipe, moments=statistics.moments.pop(name, None),
                               float_mean=statistics.float_means.get(name))
        for step, options in kernel_steps:
            rows[name].update(step(context, options))

    def stream(name: str, int8_mean: np.ndarray) -> None:
        context = LayerContext(linear[name], recipe, float_mean=statistics.float_means.get(name), int8_mean=int8_mean)
        for step, options in stream_steps:
            rows[name].update(step(context, options))

    if not streamed:
        for name in linear:
            kernel(name)
            tick()
    elif not kernel_steps:
        Int8Stream(model, x, statistics.ranges, spec).run(linear, False, stream, on_step=tick)
    else:
        # Kernel steps use the float statistics alone, so later layers are rounded (one thread,
        # in execution order) while the int8 stream runs the earlier ones: the stream waits only
        # for the layer it is at, and the two keep both cores busy where either alone does not.
        with ThreadPoolExecutor(1, thread_name_prefix="edgemobile-kernels") as pool:
            done = {name: pool.submit(kernel, name) for name in linear}
            try:
                Int8Stream(model, x, statistics.ranges, spec).run(
                    linear, True, stream, ready=lambda name: done[name].result(), on_step=tick)
            finally:
                for future in done.values():
                    future.cancel()
    if bar:
        bar.close()
    return list(rows.values()), statistics.ranges


def _first_line(exc: BaseException) -> str:
    """``Type: first line`` of a technique's exception (the type alone when it has no message)."""
    return f"{type(exc).__name__}: {first_line(exc)[:200]}" if str(exc).strip() else type(exc).__name__
