"""The engine's streamed passes over the technique images, chunk by chunk, in bounded memory.

Running every image through a float and an int8 model at once holds technique images ×
full-resolution activations × 2 in memory (10 GB for MobileNetV1 1.0/224 on 256 images).
These passes keep only what the recipe's techniques declared
(:class:`edgemobile.quantization.techniques.base.Statistic`):

1. :func:`gather_float_statistics` — the float model, ``CHUNK`` images at a time
   (:func:`edgemobile.quantization.graph.run_graph`): the range of every int8 activation
   tensor (with a fixed random sample of its values for histogram-based range choices, binned
   once the min/max is known, so one pass does), each conv/dense layer's mean output per
   channel and its input-patch moments at a fixed sample of positions
   (:class:`edgemobile.quantization.rounding.PatchMoments`);
2. :class:`Int8Stream` — the int8 simulation, layer by layer, chunk by chunk, each chunk's
   tensors kept on disk between layers (compact: int8 codes where the tensor is on an int8
   grid), fed the device's input encoding (:func:`.simulate.device_input`). A conv/dense
   layer is linear, so its int8 mean output follows from its input's sum over the images,
   kept as the input is stored: the layer's stream steps (bias correction) see it before
   each chunk is computed once, with their result (and the ReLU TFLite fuses into the layer,
   applied in memory).

Memory is therefore a chunk's activations plus per-tensor histogram samples (at most
``ranges.HISTOGRAM_SAMPLES`` values each) and per-layer moments, whatever the number of
technique images; the disk holds one int8 copy of the live tensors.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgemobile.quantization import graph, simulate
from edgemobile.quantization.ranges import RangeMeter, dequantize, grid_codes, int8_codes, quant_params, tensor_range
from edgemobile.quantization.rounding import PatchMoments
from edgemobile.quantization.techniques.base import Statistic

CHUNK = 32  # images per chunk: big enough for multi-threaded TF kernels, small enough to stay bounded


def chunks(n: int, size: int = CHUNK) -> list[tuple[int, int]]:
    """(start, stop) of each chunk of ``n`` images.

    Args:
        n: number of images.
        size: images per chunk.
    """
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def layer_positions(layer: graph.LinearLayer) -> int:
    """Output values per channel per image of a conv/dense layer.

    Args:
        layer: the layer.
    """
    shape = layer.layer.output.shape
    return int(np.prod([int(d) for d in shape[1:-1]])) if len(shape) > 2 else 1


@dataclasses.dataclass
class FloatStatistics:
    """What the float pass gathered: ``ranges`` (int8 tensor's layer name → (lo, hi), chosen by
    the recipe's range method), ``float_means`` and ``moments`` per conv/dense layer name."""

    ranges: dict[str, tuple[float, float]]
    float_means: dict[str, np.ndarray]
    moments: dict[str, PatchMoments]


def gather_float_statistics(model, x: np.ndarray, linear: dict[str, graph.LinearLayer], needs: frozenset,
                            range_method: str, on_chunk: Callable[[], None] = lambda: None) -> FloatStatistics:
    """One float pass over ``x`` in chunks gathering the statistics in ``needs``.

    Args:
        model: the BatchNorm-folded Keras model.
        x: the technique images (normalized, NHWC).
        linear: the conv/dense layers the layer steps run on, by name.
        needs: :class:`Statistic` kinds to gather.
        range_method: how activation ranges are chosen (``ranges.RANGE_METHODS``).
        on_chunk: called after each chunk (a progress bar).
    """
    roles = simulate.layer_roles(model)
    logits = simulate.feeds_softmax(model)
    wants_ranges = Statistic.ACTIVATION_RANGES in needs or Statistic.INT8_MEANS in needs
    ranged = {name for name, role in roles.items() if role in (simulate.OWN, simulate.LINEAR)} if wants_ranges else set()
    histograms = Statistic.ACTIVATION_HISTOGRAMS in needs  # the meters keep their histogram samples in the one pass
    meters = {name: RangeMeter(logits=name in logits, images=len(x) if histograms else None) for name in ranged}
    summed = set(linear) if Statistic.FLOAT_MEANS in needs else set()
    sums: dict[str, np.ndarray] = {}
    moments = {name: PatchMoments(layer, len(x)) for name, layer in linear.items()} \
        if Statistic.PATCH_MOMENTS in needs else {}
    first = {"image": 0}

    def observe(layer, inputs, output):
        name = layer.name
        if name in meters or name in summed:
            value = np.asarray(output)
            if name in meters:
                meters[name].observe(value)
            if name in summed:
                total = value.reshape(-1, value.shape[-1]).sum(axis=0, dtype=np.float64)
                sums[name] = sums[name] + total if name in sums else total
        if name in moments:
            moments[name].add(np.asarray(inputs[0]), first["image"])
        return None

    for lo, hi in chunks(len(x)):
        first["image"] = lo
        graph.run_graph(model, x[lo:hi], observe)
        on_chunk()
    ranges = {name: meter.choose(range_method) for name, meter in meters.items()}
    means = {name: sums[name] / (layer_positions(linear[name]) * len(x)) for name in sums}
    return FloatStatistics(ranges, means, moments)


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


LayerStep = Callable[[str, np.ndarray], None]


@dataclasses.dataclass
class Int8Stream:
    """The int8 simulation of a BatchNorm-folded model over the technique images, streamed
    (see the module docstring).

    ``ranges``: each int8 activation's range (:attr:`FloatStatistics.ranges`); ``spec``: the
    model's PreprocessSpec (device input encoding)."""

    model: Any
    images: np.ndarray
    ranges: dict[str, tuple[float, float]]
    spec: Any = None

    def run(self, linear: dict[str, graph.LinearLayer], kernels_final: bool, layer_step: LayerStep,
            ready: Callable[[str], None] = lambda name: None, on_step: Callable[[], None] = lambda: None) -> None:
        """Run the stream; at each conv/dense layer of ``linear``, ``layer_step(name, int8_mean)``
        with its mean output per channel before the layer's output is computed.

        Args:
            linear: the conv/dense layers the steps run on, by name (others run as they are).
            kernels_final: the kernels are on the converter's int8 grid already (a kernel step
                ran); else the stream rounds each to nearest as the converter will, and restores it.
            layer_step: the recipe's stream steps for one layer (may change its bias).
            ready: returns once a layer's kernel is final (kernel steps run ahead on a thread).
            on_step: called after each layer's step and after its output (a progress bar).
        """
        model, x, roles = self.model, self.images, simulate.layer_roles(self.model)
        lo_in, hi_in = tensor_range(x, "minmax")  # the input keeps its min/max (see ranges)
        parts = chunks(len(x))
        nodes = graph.execution_order(model)
        remaining = graph.reader_counts(nodes)
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
            if (node.operation.name in linear and roles.get(node.operation.name) == simulate.FUSED_LINEAR
                    and len(reads) == 1 and len(reads[0].input_tensors) == 1
                    and simulate.is_fusable_activation(reads[0].operation) and id(t) not in outputs):
                activation_of[id(t)] = reads[0]
        fused_into = {id(node) for node in activation_of.values()}

        def keep(name: str, value, inputs: list[int], out: int, k: int):
            """Store chunk ``k`` of a layer's output as the int8 model holds it; returns its grid."""
            role = roles.get(name)
            if role in (simulate.OWN, simulate.LINEAR):
                lo, hi = self.ranges[name]
                store.put_codes(out, k, *int8_codes(value, lo, hi))
                return lo, hi
            fixed = role == simulate.FIXED
            grid = (0.0, 255.0 / 256.0) if fixed else grid_of.get(inputs[0]) if role == simulate.PASS and inputs else None
            store.put(out, k, simulate.fixed_grid(value) if fixed else value, grid)
            return grid

        with tempfile.TemporaryDirectory(prefix="edgemobile-stream-") as tmp:
            # the inputs of conv/dense layers: their sums over the images give each layer's mean output
            store = _Store(Path(tmp), {id(node.input_tensors[0]) for node in nodes if node.operation.name in linear})
            source = id(model.inputs[0])
            for k, (a, b) in enumerate(parts):
                store.put(source, k, simulate.device_input(x[a:b], lo_in, hi_in, self.spec), (lo_in, hi_in))
            grid_of[source] = (lo_in, hi_in)
            for node in nodes:
                name = node.operation.name
                ins = [id(t) for t in node.input_tensors]
                (out,) = [id(t) for t in node.outputs]

                def run(k: int):
                    return graph.call_node(node, {t: store.get(t, k) for t in set(ins)})

                if id(node) in fused_into:
                    continue  # computed with the conv/dense layer before it
                if name in linear:
                    ready(name)
                    layer = linear[name]
                    act = activation_of.get(out)  # a fused ReLU: computed here, in memory
                    kernel = None if kernels_final else layer.kernel
                    if kernel is not None:  # the converter rounds the kernel to nearest
                        layer.set(kernel=layer.from_rows(graph.quantize_rows(layer.rows(kernel))))
                    # The mean output follows from the input's sum over the images (the layer is
                    # linear), so each chunk is computed once, with the steps' result.
                    (read,) = set(ins)
                    layer_step(name, layer.output_sum(store.sums[read]) / (layer_positions(layer) * len(x)) + layer.bias)
                    on_step()
                    target, target_out = (name, out) if act is None else (act.operation.name, id(act.outputs[0]))
                    try:
                        for k in range(len(parts)):
                            value = np.asarray(run(k))
                            if act is not None:
                                value = np.asarray(graph.call_node(act, {out: value}))
                            grid = keep(target, value, ins, target_out, k)
                            del value  # not alive while the next chunk is computed
                    finally:
                        if kernel is not None:
                            layer.set(kernel=kernel)
                    on_step()
                    if act is not None:
                        grid_of[out] = None
                        out = target_out
                        for t in act.input_tensors:
                            remaining[id(t)] -= 1
                else:
                    for k in range(len(parts)):
                        grid = keep(name, np.asarray(run(k)), ins, out, k)
                grid_of[out] = grid
                for t in node.input_tensors:
                    remaining[id(t)] -= 1
                    if remaining[id(t)] == 0 and id(t) not in outputs:
                        store.drop(id(t), len(parts))
