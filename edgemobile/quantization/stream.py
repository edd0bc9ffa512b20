"""The sequential AdaRound / bias-correction pass, streamed over chunks of images.

The simulation of :mod:`.simulate` runs every image through both streams at once, which
holds technique images × full-resolution activations × (float + int8) in memory — 10 GB for
MobileNetV1 1.0/224 on 256 images. This pass computes the same thing keeping only what each
technique needs:

1. float stream, ``CHUNK`` images at a time (:func:`edgemobile.quantization.graph.run_graph`):
   min/max of every int8 activation tensor, each conv/dense layer's mean output per channel,
   the values at a fixed random sample of positions for the range histograms (as
   :func:`.ranges.tensor_range` takes; binned once the min/max is known, so one pass does)
   and AdaRound's input-patch moments at a fixed sample of positions
   (:class:`.adaround.PatchMoments`) — AdaRound fits the float inputs (its symmetric
   objective), so every layer is rounded from these statistics alone;
2. only with bias correction: the int8 stream, layer by layer, chunk by chunk, each chunk's
   tensors kept on disk between layers (compact: int8 codes where the tensor is on an int8
   grid). A conv/dense layer is linear, so its mean output (with the int8 model's kernel)
   follows from its input's sum over the images, kept as the input is stored: the shift
   from the float mean is removed from the bias first, and each chunk is then computed once,
   with the corrected bias (and the ReLU TFLite fuses into it, applied in memory).
   With AdaRound too, each layer is rounded on a second thread ahead of the stream, which
   waits only for the layer it is at (same kernels, same order: the same model).

Memory is therefore a chunk's activations plus per-tensor histogram samples (at most
``ranges.HISTOGRAM_SAMPLES`` values each) and per-layer moments,
whatever the number of technique images; the disk holds one int8 copy of the live tensors.
The int8 stream of (2) is fed the device's input encoding (:func:`.simulate.device_input`).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgemobile.quantization import graph as G
from edgemobile.quantization import simulate as S
from edgemobile.quantization.ranges import RangeMeter, dequantize, grid_codes, int8_codes, quant_params, tensor_range

CHUNK = 32  # images per chunk: big enough for multi-threaded TF kernels, small enough to stay bounded


def _chunks(n: int, size: int = CHUNK) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def sequential_pass(model, x: np.ndarray, options, progress: bool = True, spec=None,
                    skip: set[str] = frozenset()) -> list[dict]:
    """AdaRound and/or bias-correct every conv/dense layer of the BatchNorm-folded ``model``
    in place, as :mod:`edgemobile.quantization.pipeline` describes; returns a row per layer.
    Layers named in ``skip`` are left as they are (the int8 stream runs them unrounded)."""
    from edgemobile.progress import Progress
    from edgemobile.quantization.adaround import PatchMoments, adaround_with

    roles = S.layer_roles(model)
    logits = S.feeds_softmax(model)
    linear = {L.name: L for L in G.linear_layers(model) if L.name not in skip}
    ranged = {name for name, role in roles.items() if role in (S.OWN, S.LINEAR)}
    chunks = _chunks(len(x))
    bar = Progress(len(chunks) + len(linear) * (2 if options.bias_correction else 1),
                   "quantizing layers", unit="step") if progress else None

    histograms = options.ranges != "minmax"  # the meters keep their histogram samples in the one pass
    meters = {name: RangeMeter(logits=name in logits, images=len(x) if histograms else None) for name in ranged}
    means: dict[str, np.ndarray] = {}
    moments = {name: PatchMoments(L, len(x)) for name, L in linear.items()} if options.adaround else {}
    state = {"first": 0}

    def float_pass(layer, inputs, output):
        name = layer.name
        if name in meters or name in linear:
            value = np.asarray(output)
            if name in meters:
                meters[name].observe(value)
            if name in linear:
                total = value.reshape(-1, value.shape[-1]).sum(axis=0, dtype=np.float64)
                means[name] = means[name] + total if name in means else total
        if name in moments:
            moments[name].add(np.asarray(inputs[0]), state["first"])
        return None

    for lo, hi in chunks:
        state["first"] = lo
        G.run_graph(model, x[lo:hi], float_pass)
        if bar:
            bar.update()
    ranges = {name: meter.choose(options.ranges) for name, meter in meters.items()}
    meters.clear()  # their histogram samples are not needed by the int8 stream

    rows: dict[str, dict[str, Any]] = {name: {"layer": name, "kind": L.kind} for name, L in linear.items()}

    def adaround(name: str) -> None:
        cov = moments.pop(name).covariance(centered=options.bias_correction)
        rows[name].update(adaround_with(linear[name], cov, options.adaround_iterations).as_dict())

    if not options.bias_correction:
        for name in linear:
            if options.adaround:
                adaround(name)
            if bar:
                bar.update()
    elif not options.adaround:
        _int8_stream(model, x, roles, linear, ranges, _means(means, linear, len(x)), rows, spec, False, bar)
    else:
        # AdaRound fits the float statistics alone, so later layers are rounded (one thread, in
        # execution order) while the int8 stream runs the earlier ones: the stream waits only
        # for the layer it is at, and the two keep both cores busy where either alone does not.
        with ThreadPoolExecutor(1, thread_name_prefix="edgemobile-adaround") as pool:
            rounded = {name: pool.submit(adaround, name) for name in linear}
            try:
                _int8_stream(model, x, roles, linear, ranges, _means(means, linear, len(x)), rows, spec, True, bar,
                             ready=lambda name: rounded[name].result())
            finally:
                for future in rounded.values():
                    future.cancel()
    if bar:
        bar.close()
    return list(rows.values())


def _means(totals: dict[str, np.ndarray], linear: dict, images: int) -> dict[str, np.ndarray]:
    """Each layer's float mean output per channel, from its per-channel sums."""
    return {name: totals[name] / (_positions(L) * images) for name, L in linear.items()}


def _positions(layer: G.LinearLayer) -> int:
    """Output values per channel per image."""
    shape = layer.layer.output.shape
    return int(np.prod([int(d) for d in shape[1:-1]])) if len(shape) > 2 else 1


class _Store:
    """Tensors of the int8 stream, one file per (tensor, chunk), int8 codes where on a grid;
    for the tensors in ``summed``, also their sum over the images (``sums``, float64)."""

    def __init__(self, folder: Path, summed: set[int] = frozenset()):
        self.folder = folder
        self.grids: dict[tuple[int, int], tuple[float, int]] = {}
        self.summed = summed
        self.sums: dict[int, np.ndarray] = {}

    def _add_sum(self, tensor: int, total: np.ndarray) -> None:
        self.sums[tensor] = total if tensor not in self.sums else self.sums[tensor] + total

    def _path(self, tensor: int, chunk: int) -> Path:
        return self.folder / f"{tensor}_{chunk}.npy"

    def put(self, tensor: int, chunk: int, value: np.ndarray, grid: tuple[float, float] | None) -> None:
        value = np.asarray(value, np.float32)
        if grid is not None:
            scale, zero_point = quant_params(*grid)
            codes = grid_codes(value, scale, zero_point)
            if codes is not None:
                self.put_codes(tensor, chunk, codes, scale, zero_point)
                return
        self.grids.pop((tensor, chunk), None)
        np.save(self._path(tensor, chunk), value)
        if tensor in self.summed:
            self._add_sum(tensor, value.sum(axis=0, dtype=np.float64))

    def put_codes(self, tensor: int, chunk: int, codes: np.ndarray, scale: float, zero_point: int) -> None:
        np.save(self._path(tensor, chunk), codes)
        self.grids[tensor, chunk] = (scale, zero_point)
        if tensor in self.summed:  # Σ (code - zero point) · scale, from the exact integer sums
            self._add_sum(tensor, (codes.sum(axis=0, dtype=np.int64) - len(codes) * zero_point) * float(scale))

    def get(self, tensor: int, chunk: int) -> np.ndarray:
        value = np.load(self._path(tensor, chunk))
        if (tensor, chunk) in self.grids:
            return dequantize(value, *self.grids[tensor, chunk])
        return value

    def drop(self, tensor: int, chunks: int) -> None:
        for k in range(chunks):
            self._path(tensor, k).unlink(missing_ok=True)
            self.grids.pop((tensor, k), None)
        self.sums.pop(tensor, None)


def _int8_stream(model, x, roles, linear, ranges, reference_mean, rows, spec, adarounded, bar,
                 ready: Callable[[str], None] = lambda name: None) -> None:
    """Layer by layer over the stored chunks of the int8 stream: measure and remove each
    conv/dense layer's mean output shift (see the module docstring). ``ready(name)`` returns
    once that layer's kernel is final (AdaRound)."""
    lo_in, hi_in = tensor_range(x, "minmax")  # the input keeps its min/max (see ranges)
    chunks = _chunks(len(x))
    nodes = G._nodes(model)
    remaining = G._reader_counts(nodes)
    outputs = {id(t) for t in model.outputs}
    grid_of: dict[int, tuple[float, float] | None] = {}  # tensor → the int8 grid it is on
    readers: dict[int, list] = {}
    for node in nodes:
        for t in node.input_tensors:
            readers.setdefault(id(t), []).append(node)
    # conv/dense output → the fused ReLU node that alone reads it (TFLite stores only the ReLU's output)
    activation_of = {}
    for node in nodes:
        (t,) = node.outputs
        reads = readers.get(id(t), [])
        if (node.operation.name in linear and roles.get(node.operation.name) == S.FUSED_LINEAR and len(reads) == 1
                and len(reads[0].input_tensors) == 1 and S.is_fusable_activation(reads[0].operation)
                and id(t) not in outputs):
            activation_of[id(t)] = reads[0]
    fused_into = {id(node) for node in activation_of.values()}

    def keep(name: str, value, inputs: list[int], out: int, k: int):
        """Store chunk ``k`` of a layer's output as the int8 model holds it; returns its grid."""
        role = roles.get(name)
        if role in (S.OWN, S.LINEAR):
            lo, hi = ranges[name]
            store.put_codes(out, k, *int8_codes(value, lo, hi))
            return lo, hi
        grid = (0.0, 255.0 / 256.0) if role == S.FIXED else grid_of.get(inputs[0]) if role == S.PASS and inputs else None
        store.put(out, k, S.fixed_grid(value) if role == S.FIXED else value, grid)
        return grid

    with tempfile.TemporaryDirectory(prefix="edgemobile-stream-") as tmp:
        # the inputs of conv/dense layers: their sums over the images give each layer's mean output
        store = _Store(Path(tmp), {id(node.input_tensors[0]) for node in nodes if node.operation.name in linear})
        source = id(model.inputs[0])
        for k, (a, b) in enumerate(chunks):
            store.put(source, k, S.device_input(x[a:b], lo_in, hi_in, spec), (lo_in, hi_in))
        grid_of[source] = (lo_in, hi_in)
        for node in nodes:
            layer = node.operation
            name = layer.name
            ins = [id(t) for t in node.input_tensors]
            (out,) = [id(t) for t in node.outputs]

            def run(k: int):
                return G._call(node, {t: store.get(t, k) for t in set(ins)})

            if id(node) in fused_into:
                continue  # computed with the conv/dense layer before it
            if name in linear:
                ready(name)
                L = linear[name]
                act = activation_of.get(out)  # a fused ReLU: computed here, in memory
                kernel = None if adarounded else L.kernel
                if kernel is not None:  # the converter rounds the kernel to nearest
                    L.set(kernel=L.from_rows(G.quantize_rows(L.rows(kernel))))
                bias = L.bias
                # The mean output follows from the input's sum over the images (the layer is
                # linear), so each chunk is computed once, with the corrected bias.
                (read,) = set(ins)
                mean = L.output_sum(store.sums[read]) / (_positions(L) * len(x)) + bias
                shift = mean - reference_mean[name]
                L.set(bias=bias.astype(np.float64) - shift)
                rows[name]["mean_abs_shift_removed"] = float(np.mean(np.abs(shift)))
                if bar:
                    bar.update()
                target, target_out = (name, out) if act is None else (act.operation.name, id(act.outputs[0]))
                try:
                    for k in range(len(chunks)):
                        value = np.asarray(run(k))
                        if act is not None:
                            value = np.asarray(G._call(act, {out: value}))
                        grid = keep(target, value, ins, target_out, k)
                        del value  # not alive while the next chunk is computed
                finally:
                    if kernel is not None:
                        L.set(kernel=kernel)
                if bar:
                    bar.update()
                if act is not None:
                    grid_of[out] = None
                    out = target_out
                    for t in act.input_tensors:
                        remaining[id(t)] -= 1
            else:
                for k in range(len(chunks)):
                    grid = keep(name, np.asarray(run(k)), ins, out, k)
            grid_of[out] = grid
            for t in node.input_tensors:
                remaining[id(t)] -= 1
                if remaining[id(t)] == 0 and id(t) not in outputs:
                    store.drop(id(t), len(chunks))
