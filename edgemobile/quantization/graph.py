"""The Keras-side view every quantization technique works on.

* :func:`fold_batchnorm` — an equivalent functional model with each BatchNorm folded into
  the Conv2D/DepthwiseConv2D/Dense before it (the converter folds them the same way, so the
  TFLite graph is unchanged), making the weights the converter quantizes visible and
  editable;
* :class:`LinearLayer` — one such layer's kernel seen as *output channels × the rest*, the
  layout TFLite's per-channel int8 grid is defined on (symmetric, scale = max|w| / 127 per
  output channel);
* :func:`run_graph` — eager, layer-by-layer execution of a functional model with a hook
  that may observe or replace every layer's output (quantization simulation, statistics),
  dropping intermediate tensors as soon as nothing needs them.

Needs TensorFlow/Keras (converter install).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Any, Callable, Iterator

import numpy as np

from edgemobile.errors import EdgeMobileError

INT8_MAX = 127  # TFLite int8 weights: symmetric, narrow range [-127, 127]


def _keras():
    import keras

    return keras


def linear_kind(layer) -> str | None:
    """"conv", "depthwise", "dense" for the layers TFLite quantizes per channel; else None."""
    keras = _keras()
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        return None  # the per-channel views, patches and statistics are channels-last
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise"
    if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.Conv2DTranspose):
        return "conv" if layer.groups == 1 else None
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    return None


# -- graph structure -------------------------------------------------------------------------


def producer(layer):
    """The layer whose output is ``layer``'s (single) input, or None for model inputs."""
    node = layer._inbound_nodes[0]
    if len(node.input_tensors) != 1:
        return None
    op = node.input_tensors[0]._keras_history.operation
    return None if _keras().layers.InputLayer in type(op).__mro__ else op


def consumers(model) -> dict[str, list]:
    """Layer name → the layers (and operations such as ``x + 3``) of ``model`` that read its output."""
    found: dict[str, list] = {layer.name: [] for layer in model.operations}
    for layer in model.operations:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                source = tensor._keras_history.operation
                if source.name in found and layer not in found[source.name]:
                    found[source.name].append(layer)
    return found


def execution_order(model) -> list:
    """The model's non-input nodes in execution order (each node: ``node.operation`` the layer,
    ``node.input_tensors``/``node.outputs`` its Keras tensors; see :func:`call_node`).

    Args:
        model: a functional Keras model.
    """
    order = []
    for depth in sorted(model._nodes_by_depth, reverse=True):
        for node in model._nodes_by_depth[depth]:
            if node.operation is not None and not node.is_input:
                order.append(node)
    return order


Hook = Callable[[Any, list, Any], Any]


def reader_counts(nodes) -> dict[int, int]:
    """Tensor id → how many of ``nodes`` read it (a tensor is freed when its count reaches 0).

    Args:
        nodes: nodes as :func:`execution_order` gives them.
    """
    counts: dict[int, int] = {}
    for node in nodes:
        for t in node.input_tensors:
            counts[id(t)] = counts.get(id(t), 0) + 1
    return counts


def run_graph(model, x, hook: Hook | None = None):
    """Run ``model`` eagerly on ``x``; ``hook(layer, inputs, output)`` may return a replacement
    output (or None to keep it). Intermediate tensors are freed when no longer needed."""
    tensors: dict[int, Any] = {id(t): v for t, v in zip(model.inputs, [x])}
    nodes = execution_order(model)
    remaining = reader_counts(nodes)
    outputs = {id(t) for t in model.outputs}
    for node in nodes:
        if any(id(t) not in tensors for t in node.input_tensors):
            continue
        result = call_node(node, tensors)
        if hook is not None:
            inputs = [tensors[id(t)] for t in node.input_tensors]
            replaced = hook(node.operation, inputs, result)
            if replaced is not None:
                result = replaced
        for t in node.input_tensors:
            remaining[id(t)] -= 1
            if remaining[id(t)] == 0 and id(t) not in outputs:
                tensors.pop(id(t), None)
        for t, v in zip(node.outputs, result if isinstance(result, (list, tuple)) else [result]):
            tensors[id(t)] = v
    return tensors[id(model.outputs[0])]


PairHook = Callable[[Any, list, list, Callable, Callable], tuple[Any, Any] | None]


def run_paired(model, x_ref, x_mod, hook: PairHook):
    """Two streams through ``model`` in lockstep: a reference (float) stream and a modified
    (quantized) one. For each layer, ``hook(layer, ref_inputs, mod_inputs, run_ref, run_mod)``
    returns ``(ref_output, mod_output)`` — ``run_ref()``/``run_mod()`` compute the layer as
    it stands on either stream — or None to run the layer unchanged on both. Returns both
    final outputs. Lets sequential techniques see, layer by layer, what the float model
    computes and what the already-quantized layers before it feed in."""
    ref: dict[int, Any] = {id(model.inputs[0]): x_ref}
    mod: dict[int, Any] = {id(model.inputs[0]): x_mod}
    nodes = execution_order(model)
    remaining = reader_counts(nodes)
    outputs = {id(t) for t in model.outputs}
    for node in nodes:
        ref_in = [ref[id(t)] for t in node.input_tensors]
        mod_in = [mod[id(t)] for t in node.input_tensors]
        result = hook(node.operation, ref_in, mod_in, lambda: call_node(node, ref), lambda: call_node(node, mod))
        if result is None:
            result = (call_node(node, ref), call_node(node, mod))
        for t in node.input_tensors:
            remaining[id(t)] -= 1
            if remaining[id(t)] == 0 and id(t) not in outputs:
                ref.pop(id(t), None)
                mod.pop(id(t), None)
        (t,) = node.outputs
        ref[id(t)], mod[id(t)] = result
    return ref[id(model.outputs[0])], mod[id(model.outputs[0])]


def call_node(node, tensors: dict):
    """Run one node eagerly, in inference mode.

    Args:
        node: a node of :func:`execution_order`.
        tensors: tensor id → value, holding at least the node's inputs.
    """
    args, kwargs = node.arguments.fill_in(tensors)
    kwargs = {k: v for k, v in kwargs.items() if k != "training"}
    if _takes_training(node.operation):
        kwargs["training"] = False
    return _eager(node.operation)(*args, **kwargs)


_XLA: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # channels_first layer → its XLA call


def _channels_first(op) -> bool:
    return getattr(op, "data_format", None) == "channels_first"


def inference_call(model) -> Callable[[Any], Any]:
    """``model(x, training=False)`` as a callable, through XLA when the model holds a
    channels_first layer (see :func:`_eager`)."""
    def call(x):
        return model(x, training=False)

    if any(_channels_first(layer) for layer in model._flatten_layers(include_self=False)):
        import tensorflow as tf

        return tf.function(call, jit_compile=True, reduce_retracing=True)
    return call


def _eager(op) -> Callable:
    """``op`` as a callable on concrete tensors. TensorFlow's CPU kernels of a channels_first
    Conv2D/pooling run only with oneDNN, which TensorFlow enables on some CPUs and not others
    ("only supports the NHWC tensor format"); XLA compiles them everywhere, as Keras itself
    does for channels_first 3-D convolutions."""
    if not _channels_first(op):
        return op
    if op not in _XLA:
        import tensorflow as tf

        layer = weakref.ref(op)  # the compiled call must not keep its layer alive
        _XLA[op] = tf.function(lambda *a, **k: layer()(*a, **k), jit_compile=True, reduce_retracing=True)
    return _XLA[op]


def _takes_training(layer) -> bool:
    keras = _keras()
    return isinstance(layer, (keras.layers.BatchNormalization, keras.layers.Dropout))


# -- batch-norm folding ----------------------------------------------------------------------


def scalar_multiplier(op) -> float | None:
    """The constant of a ``x * c`` operation (c a Python number), else None."""
    keras = _keras()
    if isinstance(op, keras.layers.Layer) or type(op).__name__ != "Multiply" or len(op._inbound_nodes) != 1:
        return None
    args = list(op._inbound_nodes[0].arguments.args)
    tensors = [a for a in args if isinstance(a, keras.KerasTensor)]
    numbers = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    return float(numbers[0]) if len(tensors) == 1 and len(numbers) == 1 else None


@dataclasses.dataclass
class Fold:
    """A BatchNorm folded into ``linear``, through constant multiplies ``scalars`` between them."""

    linear: Any
    scalars: list  # the ``x * c`` operations between the linear layer and the batch norm

    @property
    def factor(self) -> float:
        return float(np.prod([scalar_multiplier(op) for op in self.scalars])) if self.scalars else 1.0


def foldable_batchnorms(model) -> dict[str, Fold]:
    """BatchNorm layer name → the linear layer it folds into: its producer — possibly through
    constant multiplies (``x * c``) — whose output nothing else reads."""
    keras = _keras()
    readers = consumers(model)
    found = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        if layer.axis not in (-1, len(layer.input.shape) - 1) or len(layer._inbound_nodes) != 1:
            continue  # a shared batch norm also normalizes another layer's output
        source, scalars = producer(layer), []
        while source is not None and scalar_multiplier(source) is not None and len(readers[source.name]) == 1:
            scalars.append(source)
            source = _tensor_producer(source)
        if source is None or linear_kind(source) is None or len(readers[source.name]) != 1:
            continue
        if source.activation is not keras.activations.linear or len(source._inbound_nodes) != 1:
            continue  # the batch norm comes after a non-linearity
        found[layer.name] = Fold(source, scalars)
    return found


def _tensor_producer(op):
    """The producer of the one tensor argument of ``op``."""
    keras = _keras()
    tensors = [a for a in op._inbound_nodes[0].arguments.args if isinstance(a, keras.KerasTensor)]
    source = tensors[0]._keras_history.operation
    return None if isinstance(source, keras.layers.InputLayer) else source


def folded_weights(linear, bn, factor: float = 1.0) -> list[np.ndarray]:
    """[kernel, bias] of ``linear`` with ``bn`` (and a constant ``factor`` between them)
    folded in (float64 maths, float32 result)."""
    weights = {w.path.split("/")[-1]: np.asarray(w.numpy(), np.float64) for w in bn.weights}
    channels = weights["moving_mean"].shape[0]
    gamma = weights.get("gamma", np.ones(channels))
    beta = weights.get("beta", np.zeros(channels))
    scale = gamma / np.sqrt(weights["moving_variance"] + bn.epsilon)
    kernel = np.asarray(linear.kernel.numpy(), np.float64) * factor
    bias = (np.asarray(linear.bias.numpy(), np.float64) if linear.use_bias else np.zeros(channels)) * factor
    kind = linear_kind(linear)
    if kind == "depthwise":
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    bias = (bias - weights["moving_mean"]) * scale + beta
    return [kernel.astype(np.float32), bias.astype(np.float32)]


def _inner_graph(layer):
    """The functional graph of a nested model (a ``keras.applications`` backbone, a
    Sequential block), or None for any other layer."""
    keras = _keras()
    if isinstance(layer, keras.Sequential):
        layer = getattr(layer, "_functional", None)
    return layer if isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth") else None


def nested_models(model) -> list[str]:
    """Names of the nested models that :func:`rebuild` inlines."""
    return [layer.name for layer in model.layers if _inner_graph(layer) is not None]


def rebuild(model, replace: Callable[[Any], tuple | None] | None = None, skip: set[str] = frozenset()):
    """A new, flat functional model with fresh copies of every layer (weights copied).

    ``replace(layer)`` may return ``(new_layer, weights, after)`` to use instead — ``after``
    an optional layer applied to its output (or ``(layer, weights)``); layers named in ``skip`` are removed (their
    single input passes through). Nested models are inlined (their layers become the new
    model's own); a layer called more than once stays one shared layer.
    """
    keras = _keras()
    built: list[tuple[Any, list[np.ndarray]]] = []
    made: dict[int, tuple] = {}  # id(original layer) → (new layer, after): shared layers stay shared
    names: set[str] = set()

    def call(layer, *args, **kwargs):
        if layer.name in skip:
            return next(a for a in args if isinstance(a, keras.KerasTensor))
        if not isinstance(layer, keras.layers.Layer):  # a stateless operation (``x + 3``): reuse it
            return layer(*args, **kwargs)
        inner = _inner_graph(layer)
        if inner is not None:  # a nested model: run its graph here, layer by layer
            tensors = [a for a in args if isinstance(a, keras.KerasTensor)]
            return inner._run_through_graph(tensors if len(tensors) > 1 else tensors[0],
                                            operation_fn=lambda op: op, call_fn=call)
        if id(layer) not in made:
            swap = replace(layer) if replace else None
            after = None
            if swap is None:
                new = layer.__class__.from_config(_unique(layer.get_config(), names, model.name))
                weights = layer.get_weights()
            else:
                new, weights, after = swap
            if isinstance(after, tuple):
                after, after_weights = after
                built.append((after, after_weights))
            names.update(n.name for n in (new, after) if n is not None)
            if weights:
                built.append((new, weights))
            made[id(layer)] = (new, after)
        new, after = made[id(layer)]
        out = new(*args, **kwargs)
        return after(out) if after is not None else out

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name) for t in model.inputs]
    graph = _inner_graph(model) or model
    outputs = graph._run_through_graph(inputs, operation_fn=lambda op: op, call_fn=call)
    new_model = keras.Model(inputs if len(inputs) > 1 else inputs[0], outputs, name=model.name)
    for layer, weights in built:
        layer.set_weights(weights)
    return new_model


def _unique(config: dict, names: set[str], prefix: str) -> dict:
    """``config`` with a layer name not yet used (an inlined model may reuse its parent's names)."""
    name = config.get("name")
    if name in names:
        k = 1
        while f"{prefix}_{name}_{k}" in names:
            k += 1
        config = dict(config, name=f"{prefix}_{name}_{k}")
    return config


def fold_batchnorm(model):
    """An equivalent flat model (nested models inlined) with every foldable BatchNorm folded
    into its conv/dense layer, every conv/dense layer's own activation split off into an
    Activation layer and a zero bias given to those without one (the TFLite graph is the
    same; techniques see pre-activations and may correct any bias)."""
    keras = _keras()
    if nested_models(model) or isinstance(model, keras.Sequential) or _separable(model):
        model = rebuild(model, _split_separable)
    folds = foldable_batchnorms(model)
    targets = {fold.linear.name: (model.get_layer(bn_name), fold.factor) for bn_name, fold in folds.items()}
    skipped = set(folds) | {op.name for fold in folds.values() for op in fold.scalars}

    def replace(layer):
        if linear_kind(layer) is None:
            return None
        bn, factor = targets.get(layer.name, (None, 1.0))
        activation = keras.activations.serialize(layer.activation)
        activation = activation if isinstance(activation, str) else activation.get("config", {}).get("name", activation)
        if bn is None and activation == "linear" and layer.use_bias:
            return None
        config = dict(layer.get_config(), activation="linear", use_bias=True)
        weights = layer.get_weights()
        if bn is not None:
            weights = folded_weights(layer, bn, factor)
        elif not layer.use_bias:
            weights = [weights[0], np.zeros(LinearLayer(layer, linear_kind(layer)).out_channels, np.float32)]
        after = None if activation == "linear" else keras.layers.Activation(layer.activation, name=f"{layer.name}_act")
        return layer.__class__.from_config(config), weights, after

    return rebuild(model, replace, skip=skipped)


def _separable(model) -> bool:
    return any(_splittable(layer) for layer in model.layers)


def _splittable(layer) -> bool:
    keras = _keras()
    return isinstance(layer, keras.layers.SeparableConv2D) and layer.data_format == "channels_last"


def _split_separable(layer):
    """A SeparableConv2D as the DepthwiseConv2D + 1×1 Conv2D the converter lowers it to (same
    TFLite ops), so the techniques see both; None for any other layer."""
    if not _splittable(layer):
        return None
    keras = _keras()
    c = layer.get_config()
    weights = layer.get_weights()
    depthwise = keras.layers.DepthwiseConv2D(c["kernel_size"], strides=c["strides"], padding=c["padding"],
                                             depth_multiplier=c["depth_multiplier"],
                                             dilation_rate=c["dilation_rate"], use_bias=False,
                                             name=f"{layer.name}_depthwise")
    pointwise = keras.layers.Conv2D(c["filters"], 1, use_bias=c["use_bias"], activation=c["activation"],
                                    name=f"{layer.name}_pointwise")
    return depthwise, weights[:1], (pointwise, weights[1:])


# -- per-channel views -------------------------------------------------------------------------


def conv_padding(size: int, kernel: int, stride: int, dilation: int, mode: str) -> tuple[int, int, int]:
    """(output size, pad before, pad after) of TensorFlow's "same"/"valid" convolution."""
    span = (kernel - 1) * dilation + 1
    if mode == "valid":
        return (size - span) // stride + 1, 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + span - size, 0)
    return out, total // 2, total - total // 2


@dataclasses.dataclass
class LinearLayer:
    """A Conv2D/DepthwiseConv2D/Dense layer and its weights as (out_channels, fan_in) rows."""

    layer: Any
    kind: str

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def kernel(self) -> np.ndarray:
        return np.asarray(self.layer.kernel.numpy())

    @property
    def bias(self) -> np.ndarray:
        if self.layer.use_bias:
            return np.asarray(self.layer.bias.numpy())
        return np.zeros(self.out_channels, np.float32)

    @property
    def out_channels(self) -> int:
        shape = self.layer.kernel.shape
        return int(shape[2] * shape[3]) if self.kind == "depthwise" else int(shape[-1])

    def rows(self, kernel: np.ndarray | None = None) -> np.ndarray:
        """Kernel as (out_channels, fan_in): the axis TFLite's per-channel scales run over."""
        k = self.kernel if kernel is None else kernel
        if self.kind == "depthwise":
            kh, kw, cin, mult = k.shape
            return k.reshape(kh * kw, cin * mult).T
        return k.reshape(-1, k.shape[-1]).T

    def from_rows(self, rows: np.ndarray) -> np.ndarray:
        shape = tuple(self.layer.kernel.shape)
        if self.kind == "depthwise":
            return rows.T.reshape(shape)
        return rows.T.reshape(shape)

    def output_sum(self, input_sum: np.ndarray) -> np.ndarray:
        """Σ of the layer's output without its bias over images and output positions, per
        channel (float64), from ``input_sum``: its input summed over the images (the layer is
        linear, so one "image" of sums gives the sum of the outputs).

        Each kernel tap sees the sum of the input pixels it visits, "same" padding's zeros
        included: an exact sum, not a float32 convolution of every image."""
        kernel = self.kernel.astype(np.float64)
        total_in = np.asarray(input_sum, np.float64)
        if self.kind == "dense":
            return total_in.reshape(-1, total_in.shape[-1]).sum(axis=0) @ kernel
        k = self.layer
        (kh, kw), (sh, sw), (dh, dw) = k.kernel_size, k.strides, k.dilation_rate
        rows, top, bottom = conv_padding(total_in.shape[0], kh, sh, dh, k.padding)
        cols, left, right = conv_padding(total_in.shape[1], kw, sw, dw, k.padding)
        padded = np.pad(total_in, ((top, bottom), (left, right), (0, 0)))
        out = np.zeros(self.out_channels, np.float64)
        for i in range(kh):
            for j in range(kw):
                seen = padded[i * dh:i * dh + (rows - 1) * sh + 1:sh, j * dw:j * dw + (cols - 1) * sw + 1:sw].sum((0, 1))
                out += (seen[:, None] * kernel[i, j]).ravel() if self.kind == "depthwise" else seen @ kernel[i, j]
        return out

    def set(self, kernel: np.ndarray | None = None, bias: np.ndarray | None = None) -> None:
        if kernel is not None:
            self.layer.kernel.assign(np.asarray(kernel, np.float32))
        if bias is not None:
            if not self.layer.use_bias:
                raise EdgeMobileError(f"{self.name}: layer has no bias to correct (fold batch norm first)")
            self.layer.bias.assign(np.asarray(bias, np.float32))


def linear_layers(model) -> list[LinearLayer]:
    """The per-channel-quantized layers of ``model`` in execution order."""
    found, seen = [], set()
    for node in execution_order(model):
        kind = linear_kind(node.operation)
        if kind is not None and node.operation.name not in seen:
            seen.add(node.operation.name)
            found.append(LinearLayer(node.operation, kind))
    return found


def channel_scales(rows: np.ndarray) -> np.ndarray:
    """TFLite's per-channel int8 weight scales for (out, fan_in) rows: max|w| / 127."""
    peak = np.max(np.abs(rows), axis=1).astype(np.float32)
    return np.where(peak > 0, peak / np.float32(INT8_MAX), np.float32(1.0)).astype(np.float32)


def quantize_rows(rows: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """Round-to-nearest onto the per-channel grid, returned dequantized (float32)."""
    scales = channel_scales(rows) if scales is None else scales
    q = np.clip(np.round(rows / scales[:, None]), -INT8_MAX, INT8_MAX)
    return (q * scales[:, None]).astype(np.float32)


def iter_batches(x: np.ndarray, batch: int) -> Iterator[np.ndarray]:
    for i in range(0, len(x), batch):
        yield x[i:i + batch]
