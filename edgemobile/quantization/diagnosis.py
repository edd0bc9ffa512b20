"""Per-layer diagnosis of what int8 quantization does to a model.

Two views, both on calibration images:

* **the converted model** (:func:`compare_tflite`): the int8 model and its float reference
  run side by side, every intermediate tensor kept. The reference is the float model after
  the function-preserving rewrites the conversion made (the MobileNetV3 rewrite, BatchNorm
  folding, equalization) — the same function, but channel for channel the model the int8 one
  quantizes, so equalization's channel rescaling is not counted as error — and it reads the
  input values the int8 model reads from what a device feeds it (raw pixels for MobileNet's
  [-1, 1]). For each op's output,
  *cumulative SQNR* (float tensor vs dequantized int8 tensor — all error up to here),
  *activation SQNR* (the float tensor rounded onto its own int8 grid — the error this
  tensor's grid alone adds), its range and scale; for each conv/dense op, *weight SQNR*
  (the reference's float weights vs the int8 weights, per-channel grid as converted: the
  error of their rounding, AdaRound's included) and the spread of per-channel
  weight ranges (max / median of max|w|, dead channels);
* **sensitivity** (:func:`sensitivity`): the float Keras model simulated with only one
  layer's weights — or only one activation tensor — quantized (:mod:`.simulate`), and the
  SQNR of the logits that matter (:func:`~.simulate.logit_sqnr`): what each one costs on
  its own, which ranks the layers that dominate.

TFLite's ``QuantizationDebugger`` is the prior art for the first view: it builds a debug
model with NumericVerify ops and reports per-op error with *float* inputs to each op. Here
the deployed model itself is measured (no debug build, so every kernel and rounding is the
real one), end to end as well as per tensor, and the sensitivity view says which errors
matter at the output rather than how large they are locally.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from edgemobile.progress import Progress
from edgemobile.quantization import graph, simulate
from edgemobile.quantization.agreement import Judge
from edgemobile.quantization.convert import int8_model
from edgemobile.quantization.keras_layers import model_layers
from edgemobile.quantization.layer_sensitivity import Conversion, layer_sensitivity
from edgemobile.quantization.pipeline import convert_full_integer, load_images
from edgemobile.quantization.ranges import logit_tensors
from edgemobile.runtime.interpreter import TFLiteClassifier, model_ops, tensor_inspector

LINEAR_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}  # op → output-channel axis of its filter


def _db(signal: float, noise: float) -> float:
    if noise <= 0:
        return float("inf")
    if signal <= 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


@dataclasses.dataclass
class TensorRow:
    index: int
    op: str
    name: str
    shape: tuple
    scale: float
    zero_point: int
    grid: tuple[float, float]  # smallest and largest value the int8 grid represents
    cumulative_sqnr: float
    activation_sqnr: float
    weights: dict | None = None
    logits: bool = False  # a softmax's input (see ranges.logit_tensors)
    layer: str | None = None  # the Keras layer whose op wrote it (keras_layers.model_layers), if one did

    @property
    def label(self) -> str:
        """The Keras layer and TFLite op (``conv1 (CONV_2D)``), else the TFLite tensor name."""
        return f"{self.layer} ({self.op})" if self.layer else _short(self.name)

    def as_dict(self) -> dict:
        row = dataclasses.asdict(self)
        row["shape"] = list(self.shape)
        row["grid"] = [round(v, 6) for v in self.grid]
        for key in ("cumulative_sqnr", "activation_sqnr"):
            row[key] = _finite(row[key])
        return row


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else round(float(value), 2)


def weight_stats(float_w: np.ndarray, q_w: np.ndarray, scales: np.ndarray, zero_points: np.ndarray,
                 axis: int) -> dict:
    """Per-channel view of one filter: float vs dequantized int8 and the channel-range spread."""
    w = np.moveaxis(np.asarray(float_w, np.float64), axis, 0).reshape(np.shape(float_w)[axis], -1)
    q = np.moveaxis(np.asarray(q_w, np.float64), axis, 0).reshape(w.shape)
    scales = np.broadcast_to(np.asarray(scales, np.float64).reshape(-1), (w.shape[0],))
    zero_points = np.broadcast_to(np.asarray(zero_points, np.float64).reshape(-1), (w.shape[0],))
    dq = (q - zero_points[:, None]) * scales[:, None]
    peak = np.max(np.abs(w), axis=1)
    alive = peak > 0
    median = float(np.median(peak[alive])) if alive.any() else 0.0
    return {
        "channels": int(w.shape[0]),
        "fan_in": int(w.shape[1]),
        "sqnr": _finite(_db(float(np.sum(w**2)), float(np.sum((w - dq) ** 2)))),
        "range_max": round(float(peak.max()), 6),
        "range_median": round(median, 6),
        "range_max_over_median": round(float(peak.max() / median), 2) if median > 0 else None,
        "dead_channels": int(np.sum(~alive)),
        "per_channel": bool(np.size(scales) > 1),
    }


def compare_tflite(float_model: bytes, int8_model: bytes, images: np.ndarray, progress=None,
                   spec=None) -> list[TensorRow]:
    """Every op output of ``int8_model`` against the same tensor of ``float_model`` (same
    graph: the converter's calibrated float model, or a float conversion with the same ops).
    ``images`` are normalized by ``spec``: the int8 model is fed what a device feeds
    (:meth:`~edgemobile.runtime.interpreter.TFLiteClassifier.encode_as_device`; without
    ``spec``, the images quantized) and the float model the values that input stands for."""
    fi, qi = tensor_inspector(float_model), tensor_inspector(int8_model)
    f_ops, q_ops = model_ops(fi), model_ops(qi)
    if [o["op_name"] for o in f_ops] != [o["op_name"] for o in q_ops]:
        raise ValueError("the float and int8 models have different graphs")
    q_det = {d["index"]: d for d in qi.get_tensor_details()}
    q_in = qi.get_input_details()[0]
    f_in = fi.get_input_details()[0]
    encoder = TFLiteClassifier(int8_model)
    pairs = [(int(fo["outputs"][0]), int(qo["outputs"][0]), qo) for fo, qo in zip(f_ops, q_ops)]
    logits = logit_tensors(q_ops)
    signal = np.zeros(len(pairs))
    noise = np.zeros(len(pairs))
    grid_noise = np.zeros(len(pairs))
    for x in images:
        fed = encoder.encode_as_device(x, spec) if spec is not None else encoder.encode(x)
        if encoder.input.quantized:  # the float model reads the same input values as the int8 one
            x = (fed.astype(np.float32) - np.float32(encoder.input.zero_point)) * np.float32(encoder.input.scale)
        fi.set_tensor(f_in["index"], x[None].astype(np.float32))
        fi.invoke()
        qi.set_tensor(q_in["index"], fed[None])
        qi.invoke()
        for k, (ft, qt, _) in enumerate(pairs):
            f = fi.get_tensor(ft).astype(np.float64)
            scale, zp = q_det[qt]["quantization"]
            if not scale:
                continue
            q = qi.get_tensor(qt).astype(np.float64)
            info = np.iinfo(q_det[qt]["dtype"])
            steps = np.sign(f / scale) * np.floor(np.abs(f / scale) + 0.5)  # TFLite rounding
            grid = (np.clip(steps + zp, info.min, info.max) - zp) * scale
            signal[k] += np.sum(f**2)
            noise[k] += np.sum((f - (q - zp) * scale) ** 2)
            grid_noise[k] += np.sum((f - grid) ** 2)
        if progress is not None:
            progress.update()
    rows = []
    for k, (ft, qt, op) in enumerate(pairs):
        scale, zp = q_det[qt]["quantization"]
        if not scale:
            continue
        info = np.iinfo(q_det[qt]["dtype"])
        weights = None
        if op["op_name"] in LINEAR_OPS and len(op["inputs"]) > 1:
            fw_index, qw_index = int(f_ops[k]["inputs"][1]), int(op["inputs"][1])
            qparams = q_det[qw_index]["quantization_parameters"]
            weights = weight_stats(fi.get_tensor(fw_index), qi.get_tensor(qw_index), qparams["scales"],
                                   qparams["zero_points"], LINEAR_OPS[op["op_name"]])
        rows.append(TensorRow(
            index=qt, op=op["op_name"], name=q_det[qt]["name"], shape=tuple(int(s) for s in q_det[qt]["shape"]),
            scale=float(scale), zero_point=int(zp), grid=((info.min - zp) * scale, (info.max - zp) * scale),
            cumulative_sqnr=_db(signal[k], noise[k]), activation_sqnr=_db(signal[k], grid_noise[k]),
            weights=weights, logits=qt in logits,
        ))
    return rows


def sensitivity(model, images: np.ndarray, range_method: str = "minmax", progress=None,
                spec=None) -> dict[str, Any]:
    """Logit SQNR of the simulated int8 model with everything, only weights, only
    activations, and each layer's weights / each activation tensor alone quantized.
    ``model`` is a BatchNorm-folded Keras model (:func:`.graph.fold_batchnorm`)."""
    def run(**kwargs) -> float:
        value = simulate.simulate(model, images, range_method=range_method, spec=spec, **kwargs).logit_sqnr()
        if progress is not None:
            progress.update()
        return _finite(value) if value is not None else None

    roles = simulate.layer_roles(model)
    ranged = (simulate.OWN, simulate.LINEAR)
    tensors = ["input"] + [layer.name for layer in model.operations if roles.get(layer.name) in ranged]
    result: dict[str, Any] = {
        "all": run(),
        "weights_only": run(quantize_activations=False),
        "activations_only": run(quantize_weights=False),
        "layers": [],
    }
    for layer in graph.linear_layers(model):
        result["layers"].append({"layer": layer.name, "what": "weights",
                                 "logit_sqnr": run(quantize_activations=False, only={layer.name})})
    for name in tensors:
        result["layers"].append({"layer": name, "what": "activations",
                                 "logit_sqnr": run(quantize_weights=False, only={name})})
    return result


def sensitivity_steps(model) -> int:
    """How many simulations :func:`sensitivity` runs (for a progress bar)."""
    roles = simulate.layer_roles(model)
    ranged = sum(1 for r in roles.values() if r in (simulate.OWN, simulate.LINEAR))
    return 3 + len(graph.linear_layers(model)) + 1 + ranged


def dominant(sens: dict, top: int = 5) -> list[dict]:
    """The ``top`` entries costing the most on their own (lowest logit SQNR), with each one's
    share of the summed error power."""
    rows = [r for r in sens["layers"] if r["logit_sqnr"] is not None]
    power = {id(r): 10 ** (-r["logit_sqnr"] / 10) for r in rows}
    total = sum(power.values()) or 1.0
    ranked = sorted(rows, key=lambda r: r["logit_sqnr"])[:top]
    return [dict(r, share=round(power[id(r)] / total, 3)) for r in ranked]


def format_tensor_table(rows: list[TensorRow]) -> str:
    header = ("Keras layer (TFLite op) or tensor", "shape", "cum SQNR", "act SQNR", "w SQNR", "w ch max/med", "grid")
    lines = [header]
    for r in rows:
        w = r.weights or {}
        lines.append((
            r.label, "x".join(str(s) for s in r.shape[1:]),
            _fmt(r.cumulative_sqnr), _fmt(r.activation_sqnr), _fmt(w.get("sqnr")),
            _spread(w),
            f"[{r.grid[0]:.3g}, {r.grid[1]:.3g}]",
        ))
    return _table(lines)


def format_sensitivity(sens: dict, top: int = 10) -> str:
    lines = [f"simulated int8 logit SQNR: all {_fmt(sens['all'])} dB, weights only {_fmt(sens['weights_only'])} dB, "
             f"activations only {_fmt(sens['activations_only'])} dB",
             "dominant (each alone quantized; lower SQNR = costs more):"]
    rows = [("layer", "what", "logit SQNR", "share")]
    for r in dominant(sens, top):
        rows.append((r["layer"], r["what"], _fmt(r["logit_sqnr"]), f"{100 * r['share']:.0f} %"))
    return "\n".join(lines) + "\n" + _table(rows, left=2)


def _spread(weights: dict) -> str:
    if not weights:
        return ""
    dead = f" ({weights['dead_channels']} dead)" if weights["dead_channels"] else ""
    return f"{weights['range_max_over_median']}{dead}"


def _short(name: str, width: int = 44) -> str:
    first = name.split(";")[0]
    return first if len(first) <= width else "…" + first[-(width - 1):]


def _fmt(value) -> str:
    return "-" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.1f}"


def _table(rows: list[tuple], left: int = 1) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells))
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


# -- the inspect command -----------------------------------------------------------------------


def diagnose(variant, weights, calibration, options, images: int = 32, sensitivity_images: int = 0,
             progress: bool = True) -> dict:
    """Convert ``variant`` to int8 with ``options`` and diagnose it (see the module docstring)."""
    x = load_images(calibration.paths, variant.preprocess, progress)
    model, rewrite = int8_model(variant, variant.build(weights), x)
    done = convert_full_integer(model, "int8", x, options, progress, variant.preprocess)
    layers = model_layers(done.model, done.calibrated, x, model)  # before float_reference() restores weights
    # The float side is the model after the function-preserving rewrites: its channels are the
    # int8 model's (equalization rescales them), its weights those before AdaRound/bias correction.
    float_model = done.float_tflite()
    reference_model = done.float_reference()
    rewrites = ["the MobileNetV3 rewrite"] if rewrite is not None and rewrite.applied else []
    rewrites += done.report["rewrites"]
    sample = x[: max(1, images)]
    bar = Progress(len(sample), "comparing float and int8") if progress else None
    try:
        rows = compare_tflite(float_model, done.tflite, sample, bar, variant.preprocess)
        reference = "float model" + (f" after {' + '.join(rewrites)}" if rewrites else "")
    except ValueError:  # the float conversion's graph differs: compare with the model quantized
        rows = compare_tflite(done.calibrated, done.tflite, sample, bar, variant.preprocess)
        reference = "float model after the techniques (graphs differ)"
    if bar:
        bar.close()
    names = {layer.tensor: layer.name for layer in layers}
    rows = [dataclasses.replace(r, layer=names.get(r.name)) for r in rows]
    result: dict[str, Any] = {
        "model": variant.name,
        "techniques": options.label(),
        "options": options.as_dict(),
        "calibration": calibration.describe(),
        "compared_on_images": int(len(sample)),
        "reference": reference,
        "input_feeding": _input_feeding(done.tflite, variant.preprocess),
        "notes": [rewrite.message()] if rewrite is not None and rewrite.message() else [],
        "conversion": done.report,
        "tensors": [r.as_dict() for r in rows],
        "layers": [layer.as_dict() for layer in layers],
        "sensitivity": None,
        "layer_sensitivity": None,
    }
    if sensitivity_images:  # on the same float model (folded: the simulation needs it)
        folded = graph.fold_batchnorm(reference_model)
        xs = x[:sensitivity_images]
        bar = Progress(sensitivity_steps(folded), "sensitivity", unit="sim") if progress else None
        sens = sensitivity(folded, xs, options.ranges, bar, variant.preprocess)
        if bar:
            bar.close()
        sens["images"] = int(len(xs))
        sens["dominant"] = dominant(sens)
        result["sensitivity"] = sens
        # The same question on the real interpreter, per Keras layer: only it int8, the rest float.
        judge = Judge(float_model, xs, variant.preprocess)
        result["layer_sensitivity"] = layer_sensitivity(Conversion(done, layers), judge, progress=progress)
    return result


def _input_feeding(int8_model: bytes, spec) -> str:
    fed_raw = TFLiteClassifier(int8_model).raw_pixel_offset(spec) is not None
    return "raw pixels" if fed_raw else "quantized normalized input"


def format_diagnosis(result: dict) -> str:
    rows = [TensorRow(**dict(r, shape=tuple(r["shape"]), grid=tuple(r["grid"]),
                             cumulative_sqnr=_nan(r["cumulative_sqnr"]), activation_sqnr=_nan(r["activation_sqnr"])))
            for r in result["tensors"]]
    lines = [f"{result['model']} int8 ({result['techniques']}) vs the {result['reference']}, "
             f"{result['compared_on_images']} calibration images ({result['input_feeding']} in); "
             "SQNR in dB (higher is better)",
             format_tensor_table(rows)]
    # Non-minmax ranges floor the logits on purpose (values far below the top logit give
    # probability 0 whatever they are): their drop is no loss, the SOFTMAX row says what reaches the output.
    floored = result["options"]["ranges"] != "minmax"
    worst = _worst_steps(rows, skip_logits=floored)
    if worst:
        lines.append("largest SQNR drops along the network: " + ", ".join(
            f"{r.layer or _short(r.name, 30)} ({r.op}, -{d:.1f} dB)" for r, d in worst)
            + (" (logits left out: their range's bottom is clipped on purpose)" if floored else ""))
    weights = [r for r in rows if r.weights]
    if weights:
        spread = max(weights, key=lambda r: r.weights["range_max_over_median"] or 0)
        lowest = min(weights, key=lambda r: r.weights["sqnr"] if r.weights["sqnr"] is not None else np.inf)
        lines.append(f"widest per-channel weight ranges: {spread.layer or _short(spread.name, 30)} "
                     f"(max/median {spread.weights['range_max_over_median']}); lowest weight SQNR: "
                     f"{lowest.layer or _short(lowest.name, 30)} ({_fmt(lowest.weights['sqnr'])} dB)")
    if result.get("sensitivity"):
        lines.append(format_sensitivity(result["sensitivity"]))
    if result.get("layer_sensitivity"):
        lines.append(format_layer_sensitivity(result["layer_sensitivity"]))
    return "\n".join(lines)


def format_layer_sensitivity(sens: dict, top: int = 10) -> str:
    """The ``top`` layers whose int8 costs most, measured on TFLite."""
    integer, floated = sens["int8"], sens["all_float"]
    lines = [f"measured on TFLite, {sens['images']} images: the int8 model agrees with float on "
             f"{100 * integer['agreement']:.1f} %, every layer float (int8 input and output) on "
             f"{100 * floated['agreement']:.1f} %; what each layer costs when only it is int8 "
             "(the names --keep-float takes):"]
    table = [("layer (TFLite op)", "agreement lost", "output error added", "share")]
    for r in sorted(sens["layers"], key=lambda r: -r["error_added"])[:top]:
        table.append((f"{r['layer']} ({r['op']})", f"{100 * r['agreement_loss']:+.1f} pt", f"{r['error_added']:.2e}",
                      f"{100 * r['share']:.0f} %"))
    return "\n".join(lines) + "\n" + _table(table)


def _nan(value):
    return float("nan") if value is None else value


def _worst_steps(rows: list[TensorRow], top: int = 3, skip_logits: bool = False) -> list[tuple[TensorRow, float]]:
    steps, previous = [], None
    for r in rows:
        if previous is not None and np.isfinite(r.cumulative_sqnr) and not (skip_logits and r.logits):
            steps.append((r, previous - r.cumulative_sqnr))
        if np.isfinite(r.cumulative_sqnr):
            previous = r.cumulative_sqnr
    return sorted([s for s in steps if s[1] > 0], key=lambda s: -s[1])[:top]
