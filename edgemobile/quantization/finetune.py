"""Quantization-aware fine-tuning by distillation: the float model teaches its own int8
simulation on the calibration images, so the int8 model's answers move towards float's.

:class:`QuantizedForward` is a differentiable version of :mod:`.simulate`'s int8 stream on a
BatchNorm-folded Keras model: the same layer roles (:func:`.simulate.layer_roles`), conv/dense
kernels on TFLite's per-channel symmetric grid (scales recomputed from the current weights at
every step), each stored activation rounded to the int8 grid of its range (TFLite's rounding,
half away from zero; the ranges fixed or learned LSQ-style), softmax/sigmoid outputs on their
fixed grid, and the input a device feeds (:func:`.simulate.device_input`). Gradients pass the
roundings straight through (inside the range; clipped values get none). With
``quantize=False`` and the float weights it is the teacher: one graph walk for both.

:func:`finetune` trains the conv/dense kernels and biases (in units of their int8 grid step,
:class:`GridWeights`) and the activation ranges: KL divergence between the teacher's and the
student's softmax plus every stored activation's error relative to the teacher's, on random
resized crops around the center crop and flips, with Adam and a cosine-decayed rate. A slice
of the images is held apart to measure agreement and to keep the best epoch: the lowest
held-apart KL (smoother than agreement) among the epochs whose held-apart agreement is at
least the post-training weights' (else those are kept). Every kernel ends on its int8 grid, so
the converter reproduces the trained integers.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Mapping

import numpy as np

from edgemobile.progress import Progress
from edgemobile.quantization import graph, simulate
from edgemobile.quantization.ranges import QMAX, QMIN, quant_params, tensor_range

BATCH = 32
LEARNING_RATE = 1e-2
RANGE_LEARNING_RATE = 1e-3
FEATURE_WEIGHT = 1.0
HELD_APART_FRACTION = 0.2
MAX_HELD_APART = 256
MIN_HELD_APART = 16
CROP_AREA = (0.6, 1.0)  # fraction of the center crop a random crop keeps
TEMPERATURE = 1.0


def _tf():
    import tensorflow as tf

    return tf


def _round_half_away(tf, x):
    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def fake_quant_activation(x, scale: float, zero_point: int):
    """``x`` on an int8 activation grid (TFLite rounding), gradient straight through inside it."""
    tf = _tf()
    lo, hi = (QMIN - zero_point) * scale, (QMAX - zero_point) * scale
    clipped = tf.clip_by_value(x, lo, hi)
    codes = tf.clip_by_value(_round_half_away(tf, clipped / scale) + zero_point, QMIN, QMAX)
    return clipped + tf.stop_gradient((codes - zero_point) * scale - clipped)


def fake_quant_learned(x, lo: float, hi: float, stretch_lo, stretch_hi):
    """``x`` on the int8 grid of a learned range (LSQ-style): [lo·e^stretch_lo, hi·e^stretch_hi]
    (a bound at 0 stays there), the zero point recomputed from it, gradients straight through
    the rounding to ``x`` inside the range and to the range's stretches from the rounding and
    clipping errors."""
    tf = _tf()
    low = tf.minimum(lo * tf.exp(stretch_lo), 0.0)
    high = tf.maximum(hi * tf.exp(stretch_hi), 0.0)
    scale = tf.maximum((high - low) / (QMAX - QMIN), 1e-12)
    zero_point = tf.stop_gradient(tf.clip_by_value(_round_half_away(tf, QMIN - low / scale), QMIN, QMAX))
    v = tf.clip_by_value(x / scale + zero_point, QMIN, QMAX)
    codes = v + tf.stop_gradient(_round_half_away(tf, v) - v)
    return (codes - zero_point) * scale


def fake_quant_fixed(x):
    """Softmax/sigmoid outputs on TFLite's fixed grid (:func:`.simulate.fixed_grid`)."""
    tf = _tf()
    grid = tf.clip_by_value(tf.floor(x * 256.0 + 0.5), 0.0, 255.0) / 256.0
    return x + tf.stop_gradient(grid - x)


def _channel_axes(kind: str) -> tuple[int, ...]:
    """The kernel axes one per-channel scale spans (see :meth:`.graph.LinearLayer.rows`)."""
    return {"conv": (0, 1, 2), "depthwise": (0, 1), "dense": (0,)}[kind]


def fake_quant_kernel(kernel, kind: str):
    """``kernel`` on TFLite's per-channel symmetric int8 grid (scale max|w|/127 from the current
    weights, not trained), gradient straight through."""
    tf = _tf()
    peak = tf.stop_gradient(tf.reduce_max(tf.abs(kernel), axis=_channel_axes(kind), keepdims=True))
    scale = tf.where(peak > 0, peak / graph.INT8_MAX, tf.ones_like(peak))
    q = tf.clip_by_value(tf.round(kernel / scale), -graph.INT8_MAX, graph.INT8_MAX) * scale
    return kernel + tf.stop_gradient(q - kernel)


def linear_output(layer: graph.LinearLayer, x, kernel, bias):
    """The conv/dense layer's output on ``x`` computed with the given ``kernel`` and ``bias``
    (tensors: the layer's own variables are not read), its activation applied."""
    import keras

    k = layer.layer
    if layer.kind == "dense":
        out = keras.ops.matmul(x, kernel)
    elif layer.kind == "depthwise":
        out = keras.ops.depthwise_conv(x, kernel, strides=k.strides, padding=k.padding,
                                       data_format="channels_last", dilation_rate=k.dilation_rate)
    else:
        out = keras.ops.conv(x, kernel, strides=k.strides, padding=k.padding, data_format="channels_last",
                             dilation_rate=k.dilation_rate)
    if bias is not None:
        out = out + bias
    return k.activation(out)


class QuantizedForward:
    """The int8 simulation of a BatchNorm-folded Keras ``model`` as a differentiable function
    (module docstring).

    Args:
        model: the folded model (its conv/dense layers' variables are the student's weights).
        ranges: layer name → (lo, hi) of every stored activation (the layer pass's choice);
            a tensor without one keeps float.
        learn_ranges: the ranges are trained too (:func:`fake_quant_learned`); else fixed.
    """

    def __init__(self, model, ranges: Mapping[str, tuple[float, float]], learn_ranges: bool = False):
        tf = _tf()
        self.model = model
        self.nodes = graph.execution_order(model)
        self.roles = simulate.layer_roles(model)
        self.linear = {layer.name: layer for layer in graph.linear_layers(model)}
        ranged = [name for name, role in self.roles.items() if role in (simulate.OWN, simulate.LINEAR) and name in ranges]
        self.initial = {name: (float(ranges[name][0]), float(ranges[name][1])) for name in ranged}
        self.grids = {name: quant_params(*self.initial[name]) for name in ranged}
        self.stretches = {name: (tf.Variable(0.0, name=f"{name}_lo"), tf.Variable(0.0, name=f"{name}_hi"))
                          for name in ranged} if learn_ranges else {}
        self.softmax = {node.operation.name for node in self.nodes if simulate.is_softmax(node.operation)}

    @property
    def range_variables(self) -> list:
        """The learned ranges' stretches (empty when the ranges are fixed)."""
        return [v for pair in self.stretches.values() for v in pair]

    def ranges(self) -> dict[str, tuple[float, float]]:
        """Each stored activation's current range, as the converter is to be given it."""
        out = {}
        for name, (lo, hi) in self.initial.items():
            if name in self.stretches:
                a, b = (float(v.numpy()) for v in self.stretches[name])
                lo, hi = min(lo * float(np.exp(a)), 0.0), max(hi * float(np.exp(b)), 0.0)
            out[name] = (lo, hi)
        return out

    def __call__(self, x, quantize: bool = True, weights: Mapping[str, list] | None = None):
        """The logits for input ``x`` (:meth:`outputs` without taps)."""
        return self.outputs(x, quantize, weights)[0]

    def outputs(self, x, quantize: bool = True, weights: Mapping[str, list] | None = None,
                taps: frozenset[str] = frozenset()):
        """``(logits, {name: output})``: the logits (a softmax's input; the output when there
        is none) for input ``x``, and the outputs of the layers in ``taps``.

        Args:
            x: the model's input (for the student: what a device feeds, :func:`.simulate.device_input`).
            quantize: simulate int8 (the student) or compute in float (the teacher).
            weights: conv/dense weights by layer name to use instead of the layers' own
                (constants: the teacher's float weights).
            taps: layer names whose outputs to return too (as stored: rounded in the student).
        """
        tapped = {}
        tensors = {id(self.model.inputs[0]): x}
        remaining = graph.reader_counts(self.nodes)
        logits = None
        for node in self.nodes:
            op = node.operation
            name = op.name
            if name in self.softmax:
                logits = tensors[id(node.input_tensors[0])]
            if name in self.linear:
                layer = self.linear[name]
                if weights is not None:
                    kernel = weights[name][0]
                    bias = weights[name][1] if len(weights[name]) > 1 else None
                else:
                    kernel, bias = layer.layer.kernel, layer.layer.bias if layer.layer.use_bias else None
                if quantize:
                    kernel = fake_quant_kernel(kernel, layer.kind)
                out = linear_output(layer, tensors[id(node.input_tensors[0])], kernel, bias)
            else:
                out = graph.call_node(node, tensors)
            if quantize:
                if name in self.stretches:
                    out = fake_quant_learned(out, *self.initial[name], *self.stretches[name])
                elif name in self.grids:
                    out = fake_quant_activation(out, *self.grids[name])
                elif self.roles.get(name) == simulate.FIXED:
                    out = fake_quant_fixed(out)
            for t in node.input_tensors:
                remaining[id(t)] -= 1
                if remaining[id(t)] == 0:
                    tensors.pop(id(t), None)
            (t,) = node.outputs
            tensors[id(t)] = out
            if name in taps:
                tapped[name] = out
        return (logits if logits is not None else tensors[id(self.model.outputs[0])]), tapped


class GridWeights:
    """The student's conv/dense weights in units of their int8 grid step: kernel = units · s,
    bias = units · s, with s each output channel's weight scale at the start. Adam moves every
    parameter by about the learning rate per step whatever its magnitude, so in these units
    one rate moves every layer by the same fraction of a step (on raw weights a rate that
    helps wide layers wrecks the small depthwise ones).

    Args:
        linear: the conv/dense layers by name.
    """

    def __init__(self, linear: Mapping[str, graph.LinearLayer]):
        tf = _tf()
        self.linear = dict(linear)
        self.steps, self.units = {}, {}
        for name, layer in self.linear.items():
            step = graph.channel_scales(layer.rows())
            kernel_step = step.reshape(_broadcast_shape(layer))
            units = [tf.Variable(layer.kernel / kernel_step, name=f"{name}_kernel_units")]
            if layer.layer.use_bias:
                units.append(tf.Variable(layer.bias / step, name=f"{name}_bias_units"))
            self.units[name] = units
            self.steps[name] = (tf.constant(kernel_step), tf.constant(step))

    @property
    def variables(self) -> list:
        return [v for units in self.units.values() for v in units]

    def tensors(self) -> dict[str, list]:
        """The weights by layer name (tensors, differentiable in the units)."""
        return {name: [u * step for u, step in zip(units, self.steps[name])] for name, units in self.units.items()}

    def write(self) -> None:
        """Put the weights into the layers' own variables."""
        for name, values in self.tensors().items():
            layer = self.linear[name]
            layer.set(kernel=values[0].numpy(), bias=values[1].numpy() if len(values) > 1 else None)


def _broadcast_shape(layer: graph.LinearLayer) -> tuple[int, ...]:
    """The shape per-channel values take to multiply ``layer``'s kernel (1 on the axes a scale spans)."""
    spanned = _channel_axes(layer.kind)
    return tuple(1 if axis in spanned else int(size) for axis, size in enumerate(layer.layer.kernel.shape))


def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random resized crops of the (center-cropped, normalized) images, back to their size,
    half of them flipped left-right."""
    tf = _tf()
    n, h, w = x.shape[:3]
    area = rng.uniform(*CROP_AREA, n)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3), n))
    ch = np.clip(np.sqrt(area / aspect), 0.2, 1.0)
    cw = np.clip(np.sqrt(area * aspect), 0.2, 1.0)
    top, left = rng.uniform(0, 1 - ch), rng.uniform(0, 1 - cw)
    boxes = np.stack([top, left, top + ch, left + cw], axis=1).astype(np.float32)
    flip = rng.random(n) < 0.5
    boxes[flip] = boxes[flip][:, [0, 3, 2, 1]]  # x1 > x2 flips the crop
    out = tf.image.crop_and_resize(x, boxes, np.arange(n, dtype=np.int32), (h, w), method="bilinear")
    return np.asarray(out, np.float32)


@dataclasses.dataclass
class FinetuneResult:
    epochs: int
    best_epoch: int  # 0: the post-training weights were kept
    held_apart: int
    trained_on: int
    agreement_before: float
    agreement_after: float
    history: list[dict]
    seconds: float
    ranges: dict[str, tuple[float, float]]  # the activation ranges trained with (learned or kept)

    def as_dict(self) -> dict:
        return {"epochs": self.epochs, "best_epoch": self.best_epoch, "held_apart_images": self.held_apart,
                "training_images": self.trained_on,
                "held_apart_agreement_before": round(self.agreement_before, 4),
                "held_apart_agreement_after": round(self.agreement_after, 4),
                "history": self.history, "seconds": round(self.seconds, 1)}


def held_apart_count(n: int) -> int:
    """Images held apart from training out of ``n`` calibration images."""
    return int(min(MAX_HELD_APART, max(MIN_HELD_APART, round(n * HELD_APART_FRACTION))))


def finetune(model, images: np.ndarray, ranges: Mapping[str, tuple[float, float]],
             float_weights: Mapping[str, list], spec=None, epochs: int = 8, learning_rate: float = LEARNING_RATE,
             batch: int = BATCH, seed: int = 0, learn_ranges: bool = True, feature_weight: float = FEATURE_WEIGHT,
             keep_last: bool = False,
             range_learning_rate: float = RANGE_LEARNING_RATE, progress: bool = True) -> FinetuneResult:
    """Distil the float model into its int8 simulation, in place (module docstring).

    Args:
        model: the BatchNorm-folded Keras model, its weights the post-training result.
        images: calibration images (normalized, NHWC); the last :func:`held_apart_count` of
            them are held apart.
        ranges: the activation ranges the converter will be given, by layer name.
        float_weights: the teacher's conv/dense weights (the float function in ``model``'s layout).
        spec: the model's PreprocessSpec (the device input encoding).
        epochs: passes over the training images.
        learning_rate: Adam's initial rate for the weights, in int8 grid steps (:class:`GridWeights`;
            cosine-decayed to 0).
        batch: images per step.
        learn_ranges: train the activation ranges too (the result's ``ranges`` are then the
            trained ones, which the converter must be given).
        range_learning_rate: Adam's initial rate for the ranges' log-stretches.
        feature_weight: weight of the intermediate-output term: every stored activation's
            squared error relative to the teacher's, averaged over the layers, added to the KL.
        keep_last: keep the last epoch instead of choosing on the held-apart images (to see
            what training alone does).
        seed: the augmentation and order's random seed.
        progress: a progress bar per epoch.
    """
    import keras

    tf = _tf()
    start = time.perf_counter()
    images = np.asarray(images, np.float32)
    held = held_apart_count(len(images))
    if len(images) - held < batch // 2:
        raise ValueError(f"{len(images)} calibration images are too few to fine-tune on (at least "
                         f"{held + batch // 2})")
    train, check = images[:-held], images[-held:]
    forward = QuantizedForward(model, ranges, learn_ranges)
    lo, hi = tensor_range(images, "minmax")  # the input keeps its min/max, as the converter's
    teacher_weights = {name: [tf.constant(w) for w in ws] for name, ws in float_weights.items()}
    post_training = simulate.snapshot(model)
    grid = GridWeights(forward.linear)
    weights, range_variables = grid.variables, forward.range_variables
    variables = weights + range_variables
    steps = max(1, epochs * -(-len(train) // batch))
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, steps))
    range_optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(range_learning_rate, steps))

    @tf.function(reduce_retracing=True)
    def teacher_logits(x):
        return forward(x, quantize=False, weights=teacher_weights)

    @tf.function(reduce_retracing=True)
    def student_logits(x):
        return forward(x, quantize=True, weights=grid.tensors())

    taps = frozenset(forward.grids) if feature_weight > 0 else frozenset()

    @tf.function(reduce_retracing=True)
    def step(x_float, x_device):
        teacher, teacher_taps = forward.outputs(x_float, quantize=False, weights=teacher_weights, taps=taps)
        target = tf.nn.softmax(teacher / TEMPERATURE)
        with tf.GradientTape() as tape:
            logits, student_taps = forward.outputs(x_device, quantize=True, weights=grid.tensors(), taps=taps)
            loss = _kl(tf, target, logits / TEMPERATURE) * TEMPERATURE ** 2
            if taps:
                loss += feature_weight * tf.add_n([_relative_error(tf, student_taps[n], teacher_taps[n])
                                                   for n in sorted(taps)]) / len(taps)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads[:len(weights)], weights))
        if range_variables:
            range_optimizer.apply_gradients(zip(grads[len(weights):], range_variables))
        return loss

    def measure() -> tuple[float, float]:
        """(agreement, KL) of the student with the teacher on the held-apart images."""
        agree, kl = 0, 0.0
        for i in range(0, len(check), batch):
            x = check[i:i + batch]
            t = teacher_logits(x)
            s = student_logits(simulate.device_input(x, lo, hi, spec))
            agree += int(np.sum(np.argmax(t, -1) == np.argmax(s, -1)))
            kl += float(_kl(tf, tf.nn.softmax(t), s)) * len(x)
        return agree / len(check), kl / len(check)

    rng = np.random.default_rng(seed)
    agreement0, kl0 = measure()
    history = [{"epoch": 0, "held_apart_agreement": round(agreement0, 4), "held_apart_kl": round(kl0, 5)}]
    best = (kl0, 0, agreement0, [v.numpy() for v in variables])
    try:
        for epoch in range(1, epochs + 1):
            bar = Progress(len(train), f"fine-tuning epoch {epoch}/{epochs}") if progress else None
            order = rng.permutation(len(train))
            total, count = 0.0, 0
            for i in range(0, len(order), batch):
                x = augment(train[np.sort(order[i:i + batch])], rng)
                loss = float(step(x, simulate.device_input(x, lo, hi, spec)))
                total, count = total + loss * len(x), count + len(x)
                if bar:
                    bar.note = f"loss {total / count:.4f}"
                    bar.update(len(x))
            agreement, kl = measure()
            history.append({"epoch": epoch, "loss": round(total / count, 5),
                            "held_apart_agreement": round(agreement, 4), "held_apart_kl": round(kl, 5)})
            if bar:
                bar.note = f"loss {total / count:.4f}, held-apart agreement {agreement:.1%} (before {agreement0:.1%})"
                bar.close()
            if keep_last or (kl < best[0] and agreement >= agreement0):  # never fewer agreeing than before
                best = (kl, epoch, agreement, [v.numpy() for v in variables])
    finally:  # Ctrl-C too: the model is left consistent
        if best[1] == 0:
            simulate.restore(model, post_training)  # exactly, not through the grid units
        else:
            for variable, value in zip(variables, best[3]):
                variable.assign(value)
            grid.write()
            _onto_grid(forward)
    return FinetuneResult(epochs, best[1], held, len(train), agreement0, best[2], history,
                          time.perf_counter() - start, forward.ranges())


def _relative_error(tf, student, teacher):
    """Mean squared error of a layer's output relative to the teacher's mean square."""
    teacher = tf.stop_gradient(teacher)
    return tf.reduce_mean(tf.square(student - teacher)) / (tf.reduce_mean(tf.square(teacher)) + 1e-12)


def _kl(tf, target, logits):
    """Mean KL(target ‖ softmax(logits)) over the batch."""
    log_q = tf.nn.log_softmax(logits, axis=-1)
    log_p = tf.math.log(tf.maximum(target, 1e-12))
    return tf.reduce_mean(tf.reduce_sum(target * (log_p - log_q), axis=-1))


def _onto_grid(forward: QuantizedForward) -> None:
    """Every kernel rounded onto its int8 grid: what the simulation computed is what the
    converter quantizes (it recomputes the same scales and finds the same integers)."""
    for layer in forward.linear.values():
        layer.set(kernel=layer.from_rows(graph.quantize_rows(layer.rows())))
