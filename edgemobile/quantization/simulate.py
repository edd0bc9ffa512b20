"""A float simulation of what TFLite's int8 kernels will compute, layer by layer.

:func:`simulate` runs a BatchNorm-folded Keras model (see :mod:`.graph`) on calibration
images twice in lockstep: the float reference, and a stream in which weights are rounded to
TFLite's per-channel int8 grid and every activation tensor the int8 model stores is rounded
to its int8 grid (range picked by :mod:`.ranges` from the float activations, as the
converter will). Sequential techniques — bias correction, AdaRound — hook in per
conv/dense layer and see the float inputs and outputs and the inputs the quantized layers
before them produce.

Which Keras tensors are int8 tensors in the converted model:

* a conv/dense (or add/multiply) output read only by a ReLU/ReLU6 is not: TFLite fuses the
  activation, and the activation's output is the stored tensor;
* padding, reshapes (layers or ``keras.ops.reshape``), flatten, dropout and max-pooling keep
  their input's grid;
* softmax and sigmoid outputs have TFLite's fixed grid (scale 1/256, zero point -128);
* every other layer's output — and the model input — gets its own range.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from edgemobile.quantization import graph
from edgemobile.quantization.ranges import DEFAULT_PERCENTILE, fake_quant, quant_params, tensor_range

# Layer roles in the quantized model.
LINEAR, FUSED_LINEAR, FUSED, OWN, PASS, FIXED = "linear", "fused-linear", "fused", "own", "pass", "fixed"


def is_fusable_activation(layer) -> bool:
    """A ReLU or ReLU6 that TFLite fuses into the conv/dense op before it."""
    import keras

    if isinstance(layer, keras.layers.ReLU):
        return (float(layer.negative_slope or 0) == 0 and float(layer.threshold or 0) == 0
                and layer.max_value in (None, 6, 6.0))
    if isinstance(layer, keras.layers.Activation):
        return _activation_name(layer) in ("relu", "relu6")
    return False


def _is_elementwise(layer) -> bool:
    """Add/subtract/multiply layers or operations (``x + 3``): TFLite fuses a ReLU into them."""
    return type(layer).__name__ in ("Add", "Subtract", "Multiply")


def _is_reshape_op(layer) -> bool:
    """A reshape written as an operation (``keras.ops.reshape``, e.g. MobileNetV3's classifier
    flatten): a TFLite RESHAPE, which keeps its input's grid like the Reshape layer."""
    import keras

    return not isinstance(layer, keras.layers.Layer) and type(layer).__name__ in ("Reshape", "Squeeze", "ExpandDims")


def _activation_name(layer) -> str:
    import keras

    name = keras.activations.serialize(layer.activation)
    return name if isinstance(name, str) else str(name.get("config", {}).get("name", name))


def layer_roles(model) -> dict[str, str]:
    """Layer name → its role (see the module docstring)."""
    import keras

    readers = graph.consumers(model)
    roles = {}
    for layer in model.operations:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if graph.linear_kind(layer) is not None:
            reads = readers[layer.name]
            fused = len(reads) == 1 and is_fusable_activation(reads[0])
            roles[layer.name] = FUSED_LINEAR if fused else LINEAR
        elif isinstance(layer, (keras.layers.ZeroPadding2D, keras.layers.Reshape, keras.layers.Flatten,
                                keras.layers.Dropout, keras.layers.MaxPooling2D)) or _is_reshape_op(layer):
            roles[layer.name] = PASS
        elif _is_elementwise(layer) and len(readers[layer.name]) == 1 and is_fusable_activation(readers[layer.name][0]):
            roles[layer.name] = FUSED  # ADD/MUL with the ReLU fused in
        elif isinstance(layer, keras.layers.Softmax) or (
                isinstance(layer, keras.layers.Activation) and _activation_name(layer) in ("softmax", "sigmoid")):
            roles[layer.name] = FIXED
        else:
            roles[layer.name] = OWN
    return roles


def is_softmax(layer) -> bool:
    """A Softmax layer or a softmax Activation."""
    import keras

    return isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation) and _activation_name(layer) == "softmax")


def feeds_softmax(model) -> set[str]:
    """Layers whose output (through pass-through layers) is a softmax's input: the logits."""
    roles = layer_roles(model)
    found: set[str] = set()
    for layer in model.operations:
        if roles.get(layer.name) == FIXED and is_softmax(layer):
            source = graph.producer(layer)
            while source is not None:
                found.add(source.name)
                if roles.get(source.name) != PASS:
                    break
                source = graph.producer(source)
    return found


def fixed_grid(values: np.ndarray) -> np.ndarray:
    """TFLite's softmax/sigmoid int8 output grid: scale 1/256, zero point -128."""
    q = np.clip(np.floor(np.asarray(values, np.float32) * 256.0 + 0.5), 0, 255)
    return (q / 256.0).astype(np.float32)


LinearHook = Callable[[graph.LinearLayer, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclasses.dataclass
class SimulationResult:
    reference: np.ndarray
    quantized: np.ndarray
    ranges: dict[str, tuple[float, float]]
    logits: tuple[np.ndarray, np.ndarray] | None = None  # (float, quantized) softmax inputs

    def logit_sqnr(self) -> float | None:
        """Output fidelity in dB (see :func:`logit_sqnr`); None without a softmax."""
        return None if self.logits is None else logit_sqnr(*self.logits)


def logit_sqnr(reference: np.ndarray, quantized: np.ndarray, span: float = 8.0) -> float:
    """SQNR (dB) of the logits that matter: per image, shifted so the mean is 0 (softmax
    ignores shifts) and floored at the float top logit − ``span`` (lower logits give
    probability ~0 either way)."""
    ref = np.asarray(reference, np.float64).reshape(len(reference), -1)
    q = np.asarray(quantized, np.float64).reshape(len(quantized), -1)
    floor = ref.max(axis=1, keepdims=True) - span
    ref, q = np.maximum(ref, floor), np.maximum(q, floor)
    ref = ref - ref.mean(axis=1, keepdims=True)
    q = q - q.mean(axis=1, keepdims=True)
    noise = np.sum((ref - q) ** 2)
    return float(10 * np.log10(np.sum(ref**2) / noise)) if noise > 0 else float("inf")


def simulate(model, x: np.ndarray, range_method: str = "minmax", percentile: float = DEFAULT_PERCENTILE,
             on_linear: LinearHook | None = None, quantize_weights: bool = True,
             quantize_activations: bool = True, only: set[str] | None = None,
             reference: dict[str, list[np.ndarray]] | None = None,
             fixed_ranges: dict[str, tuple[float, float]] | None = None, progress=None,
             spec=None) -> SimulationResult:
    """Float and simulated-int8 outputs of ``model`` on ``x``.

    ``on_linear(layer, ref_in, mod_in, ref_out)`` is called for each conv/dense layer with
    the float input, the quantized stream's input and the float output; it returns the
    quantized stream's output (pre-activation) and may change the layer's weights — by
    default the kernel is rounded to nearest on the int8 grid for the quantized stream only.
    ``only``: quantize just these layers' weights/outputs ("input" for the model input) —
    for measuring what each one costs on its own. ``reference``: the float weights
    (:func:`snapshot`) the reference stream uses for layers that earlier passes have
    already changed. ``fixed_ranges``: ranges to use instead of ``range_method``'s.
    ``spec``: the model's :class:`~edgemobile.data.preprocessing.PreprocessSpec` (``x`` is
    its normalized output); the quantized stream then gets the input a device feeds
    (:func:`device_input`).
    """
    roles = layer_roles(model)
    logits = feeds_softmax(model)
    linear = {L.name: L for L in graph.linear_layers(model)}
    ranges: dict[str, tuple[float, float]] = {}

    def quantize(name: str, ref_out, mod_out):
        if not quantize_activations or (only is not None and name not in only):
            return mod_out
        if roles.get(name) == FIXED:
            return fixed_grid(mod_out)
        if roles.get(name) in (OWN, LINEAR):
            if fixed_ranges and name in fixed_ranges:
                lo, hi = fixed_ranges[name]
            else:
                lo, hi = tensor_range(ref_out, range_method, percentile, logits=name in logits)
            ranges[name] = (lo, hi)
            return fake_quant(mod_out, lo, hi)
        return mod_out

    captured: list = []

    def hook(layer, ref_in, mod_in, run_ref, run_mod):
        name = layer.name
        if roles.get(name) == FIXED and graph.producer(layer) is not None and graph.producer(layer).name in logits:
            captured[:] = [np.asarray(ref_in[0]), np.asarray(mod_in[0])]
        if name in linear:
            if reference is not None and name in reference:
                current = layer.get_weights()
                layer.set_weights(reference[name])
                ref_out = np.asarray(run_ref())
                layer.set_weights(current)
            else:
                ref_out = np.asarray(run_ref())
            if on_linear is not None:
                mod_out = np.asarray(on_linear(linear[name], ref_in[0], mod_in[0], ref_out))
            elif quantize_weights and (only is None or name in only):
                mod_out = np.asarray(nearest_output(linear[name], mod_in[0]))
            else:
                mod_out = np.asarray(run_mod())
        else:
            ref_out, mod_out = np.asarray(run_ref()), np.asarray(run_mod())
        if progress is not None and name in linear:
            progress.update()
        return ref_out, quantize(name, ref_out, mod_out)

    x = np.asarray(x, np.float32)
    if quantize_activations and (only is None or "input" in only):
        lo, hi = tensor_range(x, "minmax")  # the input keeps its min/max (see ranges)
        ranges["input"] = (lo, hi)
        x_mod = device_input(x, lo, hi, spec)
    else:
        x_mod = x
    ref, mod = graph.run_paired(model, x, x_mod, hook)
    return SimulationResult(np.asarray(ref), np.asarray(mod), ranges, tuple(captured) if captured else None)


def device_input(x: np.ndarray, lo: float, hi: float, spec=None) -> np.ndarray:
    """What the int8 model's first layer sees for normalized images ``x`` with input range
    [lo, hi] — as a device feeds it. When the input grid is the normalization of ``spec``
    (:meth:`~edgemobile.data.preprocessing.PreprocessSpec.fed_raw_pixels`: MobileNet's
    [-1, 1]) raw pixels go in: pixel p is the int8 code p − 128, which the model reads as
    (p − 128 − zero point) · scale — a constant offset of up to half a step per channel from
    ``x`` (+0.5/127.5 for [-1, 1], zero point −1), not a rounding. Otherwise the input is
    quantized (rounded) to the grid, as eval and the runtime do."""
    x = np.asarray(x, np.float32)
    scale, zero_point = quant_params(lo, hi)
    if spec is None or not spec.fed_raw_pixels(scale, zero_point + 128):
        return fake_quant(x, lo, hi)
    pixels = np.clip(np.rint(x * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32)), 0, 255)
    return ((pixels - np.float32(zero_point + 128)) * np.float32(scale)).astype(np.float32)


def snapshot(model) -> dict[str, list[np.ndarray]]:
    """The current weights of every conv/dense layer (a float reference for :func:`simulate`)."""
    return {L.name: L.layer.get_weights() for L in graph.linear_layers(model)}


def restore(model, weights: dict[str, list[np.ndarray]]) -> None:
    """Put back the conv/dense weights a :func:`snapshot` of ``model`` took."""
    for L in graph.linear_layers(model):
        L.layer.set_weights(weights[L.name])


def nearest_output(layer: graph.LinearLayer, x: np.ndarray) -> Any:
    """The layer's output on ``x`` with its kernel rounded to nearest on the int8 grid."""
    kernel = layer.kernel
    layer.set(kernel=layer.from_rows(graph.quantize_rows(layer.rows(kernel))))
    try:
        return layer.layer(x)
    finally:
        layer.set(kernel=kernel)
