"""A user model built on ``keras.applications.MobileNetV3Small/Large`` rewritten to the
int8-friendly graph of :mod:`edgemobile.networks.mobilenet_v3` before full-integer conversion.

The Keras backbone's int8 HARD_SWISH ops are not taken by XNNPACK (see that module's
docstring); users fine-tune exactly that backbone, so the zoo's speed would be lost on their
models. The rewrite:

1. finds the backbone: a functional model (the user's, or one nested in it or in its
   ``Sequential``) whose layers are the Keras application's (``conv``, ``expanded_conv_*``,
   ``conv_1``/``conv_1_bn``), the backbone being everything from that model's input to the
   activation after ``conv_1_bn``;
2. recognises it *exactly*: the Keras application with the parameters read off its layers
   (Small/Large, alpha, minimalistic, include_preprocessing, input size), built with
   ``include_top=False``, must have the same layers (type and configuration, names aside
   for unnamed ones), and nothing after the backbone may read a tensor inside it;
3. builds :func:`~edgemobile.networks.mobilenet_v3.int8_friendly_backbone` with the same
   weights (copied by layer name) and re-applies every layer after it — the user's head, and
   whatever wraps the backbone model — as fresh copies of the user's layers. The backbone's
   output is carried as 6·hard_swish: the 1/6 goes into the first Dense/Conv reached
   through scale-commuting layers (pooling, Dropout, Flatten/Reshape) by dividing its kernel,
   so it costs no op at all; any other layer first gets a constant multiply. A hard-swish
   ``Activation`` in the head (the include_top-style ``conv_2``) becomes the unfused form,
   ``Flatten`` a static reshape (no dynamic-shape ops);
4. :func:`int8_rewrite` then checks that the result computes the same function on the
   calibration images (max |difference| ≤ :data:`TOLERANCE`) and returns the user's model
   unchanged, with the reason, when anything above does not hold — never a wrong model.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np

from edgemobile.errors import first_line
from edgemobile.networks.mobilenet_v3 import _ARCH, _make_divisible, int8_friendly_backbone, unfused_hard_swish, unscale

TOLERANCE = 1e-4  # max |rewritten - original| output on the calibration images
CHECK_BATCH = 32
_MARKERS = ("conv", "conv_bn", "conv_1", "conv_1_bn", "expanded_conv_project")
_BLOCKS = {"small": 11, "large": 15}
# Layers through which a positive constant factor passes unchanged: f(s·x) = s·f(x).
_COMMUTING = ("GlobalAveragePooling2D", "GlobalAveragePooling1D", "AveragePooling2D", "GlobalMaxPooling2D",
              "MaxPooling2D", "Dropout", "SpatialDropout2D", "GaussianDropout", "Flatten", "Reshape",
              "ZeroPadding2D", "Identity")
_LINEAR = ("Dense", "Conv2D")  # the 1/s folds into their kernel
_HARD_SWISH = ("hard_swish", "hard_silu")  # Keras 3 names it hard_silu


class NotRecognised(Exception):
    """The model is not (exactly) a Keras MobileNetV3 backbone with a head."""


@dataclasses.dataclass
class Rewrite:
    """What :func:`int8_rewrite` did: ``applied`` and, if so, the backbone found and the
    measured max difference; otherwise ``reason`` (None when there is no MobileNetV3 at all)."""

    applied: bool
    reason: str | None = None
    backbone: str | None = None
    max_difference: float | None = None
    images: int = 0

    def as_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def message(self) -> str | None:
        """The one line to show (None when there was nothing to rewrite)."""
        if self.applied:
            return (f"rewrote the {self.backbone} backbone to edgemobile's int8-friendly graph (no int8 "
                    f"HARD_SWISH; max |difference| {self.max_difference:.1e} on {self.images} calibration images)")
        if self.reason:
            return f"MobileNetV3 backbone converted unchanged (int8 HARD_SWISH stays, slower): {self.reason}"
        return None


def int8_rewrite(model, images: np.ndarray) -> tuple[Any, Rewrite]:
    """``(model to convert, what happened)``: the int8-friendly rewrite of ``model`` if it
    holds a recognised Keras MobileNetV3 backbone and computes the same function on
    ``images`` (the preprocessed calibration batches), else ``model`` itself."""
    if _find_backbone(model) is None:
        return model, Rewrite(False)
    try:
        rewritten, backbone = rewrite_mobilenet_v3(model)
    except NotRecognised as exc:
        return model, Rewrite(False, reason=str(exc))
    except Exception as exc:  # Keras refusing to re-apply a layer of the head: convert as it is
        return model, Rewrite(False, reason=f"rebuilding it failed ({type(exc).__name__}: {first_line(exc)[:150]})")
    difference = max_difference(model, rewritten, images)
    if not difference <= TOLERANCE:  # NaN too
        return model, Rewrite(False, reason=f"the rewritten model differs by {difference:.1e} (> {TOLERANCE:g}) "
                                            f"on the {len(images)} calibration images", backbone=backbone)
    return rewritten, Rewrite(True, backbone=backbone, max_difference=float(difference), images=len(images))


def max_difference(a, b, images: np.ndarray, batch: int = CHECK_BATCH) -> float:
    """max |a(x) - b(x)| over ``images``, in batches."""
    worst = 0.0
    for i in range(0, len(images), batch):
        x = images[i:i + batch]
        d = np.abs(np.asarray(a(x, training=False)) - np.asarray(b(x, training=False)))
        worst = max(worst, float(np.nanmax(d)) if np.isfinite(d).all() else float("nan"))
        if not worst <= TOLERANCE:
            return worst
    return worst


# -- recognition --------------------------------------------------------------------------------


def _names(model) -> set[str]:
    return {layer.name for layer in model.layers}


def _find_backbone(model):
    """The functional model (``model`` or one nested in it) holding the backbone layers, or None."""
    if _is_functional(model) and set(_MARKERS) <= _names(model):
        return model
    for layer in getattr(model, "layers", ()):
        if _graph(layer) is not None:
            found = _find_backbone(layer)
            if found is not None:
                return found
    return None


def _is_functional(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth")


def _graph(model):
    """The functional graph of a functional model or a built ``Sequential``, else None."""
    if _is_functional(model):
        return model
    inner = getattr(model, "_functional", None)
    return inner if _is_functional(inner) else None


def _parameters(m) -> dict:
    """Small/Large, alpha, minimalistic, include_preprocessing and input size of the backbone
    in functional model ``m``, read off its layers."""
    names = _names(m)
    blocks = 1 + max((int(n.split("_")[2]) for n in names
                      if n.startswith("expanded_conv_") and n.split("_")[2].isdigit()), default=0)
    size = next((s for s, count in _BLOCKS.items() if count == blocks), None)
    if size is None:
        raise NotRecognised(f"{blocks} inverted-residual blocks (MobileNetV3-Small has 11, Large 15)")
    minimalistic = not any("squeeze_excite" in n for n in names)
    table, _ = _ARCH[size]
    observed = [m.get_layer(f"expanded_conv_{i}_project" if i else "expanded_conv_project").filters
                for i in range(blocks)]
    # any alpha giving these widths gives this graph: try the ones the widths imply
    candidates = sorted({f / row[2] for f, row in zip(observed, table)} | {0.35, 0.5, 0.75, 1.0, 1.25, 1.5})
    alpha = next((a for a in candidates if [_make_divisible(row[2] * a) for row in table] == observed), None)
    if alpha is None:
        raise NotRecognised(f"block widths {observed} match no MobileNetV3-{size.title()} alpha")
    shape = m.input_shape if not isinstance(m.input_shape, list) else m.input_shape[0]
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise NotRecognised(f"backbone input shape {tuple(shape)} is not a fixed image size")
    preprocessing = any(type(layer).__name__ == "Rescaling" for layer in m.layers)
    return {"size": size, "alpha": alpha, "minimalistic": minimalistic, "include_preprocessing": preprocessing,
            "input_shape": tuple(int(d) for d in shape[1:])}


def _describe(p: dict) -> str:
    kind = " minimalistic" if p["minimalistic"] else ""
    return f"MobileNetV3-{p['size'].title()}{kind} alpha {p['alpha']:g} {p['input_shape'][0]}x{p['input_shape'][1]}"


def _signature(op) -> tuple:
    """What identifies a layer up to its (possibly auto-generated) name."""
    try:
        config = dict(op.get_config())
    except Exception:  # operations without a config
        config = {}
    for key in ("name", "trainable", "dtype", "build_config", "compile_config"):
        config.pop(key, None)
    weights = tuple(tuple(w.shape) for w in getattr(op, "weights", ()))
    detail = config.get("activation") if isinstance(config.get("activation"), str) else None
    label = f"{type(op).__name__}({detail})" if detail else type(op).__name__
    return type(op).__name__, repr(sorted(config.items())), weights, label


def _backbone_output(m, minimalistic: bool):
    """The tensor of ``m``'s graph after the activation that follows ``conv_1_bn``."""
    bn_out = m.get_layer("conv_1_bn").output
    consumers = [node for nodes in m._nodes_by_depth.values() for node in nodes
                 if any(t is bn_out for t in node.input_tensors)]
    if len(consumers) != 1:
        raise NotRecognised(f"conv_1_bn feeds {len(consumers)} layers (the Keras backbone: one activation)")
    op = consumers[0].operation
    want = "ReLU" if minimalistic else "Activation"
    if type(op).__name__ != want or (want == "Activation" and _activation_name(op) not in _HARD_SWISH):
        raise NotRecognised(f"conv_1_bn is followed by {type(op).__name__} {op.name}, not the backbone's "
                            f"{'ReLU' if minimalistic else 'hard-swish'}")
    return consumers[0].outputs[0]


def _activation_name(layer) -> str:
    activation = layer.get_config().get("activation")
    return activation if isinstance(activation, str) else str(getattr(activation, "__name__", activation))


def _recognise(m):
    """(parameters, the backbone's output tensor, the head as a Function from it) of ``m``."""
    import keras
    from keras.src.ops.function import Function

    p = _parameters(m)
    out = _backbone_output(m, p["minimalistic"])
    app = keras.applications.MobileNetV3Small if p["size"] == "small" else keras.applications.MobileNetV3Large
    stock = app(input_shape=p["input_shape"], alpha=p["alpha"], minimalistic=p["minimalistic"], include_top=False,
                weights=None, include_preprocessing=p["include_preprocessing"])
    try:
        span = Function(m.inputs, [out])
        head = Function([out], m.outputs)
    except ValueError as exc:  # "Graph disconnected": the head reads inside the backbone
        raise NotRecognised(f"layers after the backbone read its inner tensors ({first_line(exc)[:120]})")
    ours = collections.Counter(_signature(op) for op in span.operations if type(op).__name__ != "InputLayer")
    keras_app = collections.Counter(_signature(op) for op in stock.operations if type(op).__name__ != "InputLayer")
    if ours != keras_app:
        extra = ", ".join(sorted({s[-1] for s in ours - keras_app})[:3]) or "nothing"
        missing = ", ".join(sorted({s[-1] for s in keras_app - ours})[:3]) or "nothing"
        raise NotRecognised(f"the backbone differs from keras.applications' {_describe(p)} "
                            f"(has {extra} where the application has {missing})")
    return p, out, head


# -- rewriting ----------------------------------------------------------------------------------


def rewrite_mobilenet_v3(model):
    """``(rewritten model, backbone description)``; raises :class:`NotRecognised`. The user's
    model is not changed (every layer of the result is a copy)."""
    import keras

    target = _find_backbone(model)
    if target is None:
        raise NotRecognised("no MobileNetV3 backbone layers")
    tracer = _Tracer(target)
    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name)
              for t in model.inputs]
    outputs = tracer.run(model, inputs)
    from keras import tree

    outputs = tree.map_structure(lambda t: unscale(t, tracer.scales.get(id(t), 1.0)), outputs)
    return keras.Model(_one(inputs), outputs, name=model.name), tracer.described[0]


def _one(tensors: list):
    """A single input as itself (Keras warns when a one-input model is called with a list)."""
    return tensors[0] if len(tensors) == 1 else tensors


class _Tracer:
    """Re-applies a functional graph on new tensors, from copies of its layers, with the
    backbone model ``target`` (the graph itself or nested in it at any depth) replaced by the
    int8-friendly backbone; ``scales[id(t)] = s`` for tensors carried as ``s *`` their value."""

    def __init__(self, target):
        self.target = target
        self.scales: dict[int, float] = {}
        self.described: list[str] = []

    def run(self, model, inputs):
        if model is self.target:
            return self._backbone(model, inputs)
        return _graph(model)._run_through_graph(inputs, operation_fn=self._operation)

    def _backbone(self, m, inputs):
        import keras

        p, _, head = _recognise(m)
        if len(inputs) != 1:
            raise NotRecognised(f"the backbone model has {len(inputs)} inputs")
        x, scale = int8_friendly_backbone(inputs[0], p["size"], p["alpha"], p["minimalistic"],
                                          rescale=p["include_preprocessing"])
        for layer in keras.Model(inputs[0], x).layers:
            if layer.weights:
                try:
                    layer.set_weights(m.get_layer(layer.name).get_weights())
                except ValueError as exc:
                    raise NotRecognised(f"layer {layer.name}: {first_line(exc)[:120]}") from None
        self.described.append(_describe(p))
        self.scales[id(x)] = scale
        return head._run_through_graph([x], operation_fn=self._operation)

    def _operation(self, op):
        """The callable that applies ``op`` to new tensors, carrying their scale."""
        if _graph(op) is not None and (op is self.target or _find_backbone(op) is self.target):
            return lambda *args, **kwargs: self.run(op, [a for a in _flat(args, kwargs) if hasattr(a, "shape")])
        kind = type(op).__name__
        scales = self.scales

        def call(*args, **kwargs):
            tensors = [a for a in _flat(args, kwargs) if hasattr(a, "shape") and id(a) in scales]
            s = max((scales[id(t)] for t in tensors), default=1.0)
            if s != 1.0 and len(tensors) == 1 and kind in _COMMUTING:
                out = _copy(op)(*args, **kwargs)
            elif s != 1.0 and len(tensors) == 1 and kind in _LINEAR and len(args) == 1 and not kwargs:
                out, s = _copy(op, kernel_scale=1.0 / s)(args[0]), 1.0
            else:
                if s != 1.0:  # e.g. a BatchNorm or an activation first: undo the factor
                    args, kwargs = _map(args, kwargs, lambda t: unscale(t, scales.get(id(t), 1.0)))
                out, s = _copy(op)(*args, **kwargs), 1.0
            for t in _flat([out], {}):
                if hasattr(t, "shape"):
                    scales[id(t)] = s
            return out

        return call


def _flat(args, kwargs) -> list:
    from keras import tree

    return tree.flatten((list(args), kwargs))


def _map(args, kwargs, fn):
    from keras import tree

    def f(a):
        return fn(a) if hasattr(a, "shape") and hasattr(a, "_keras_history") else a

    return tree.map_structure(f, list(args)), tree.map_structure(f, dict(kwargs))


def _copy(op, kernel_scale: float = 1.0):
    """A callable that applies a fresh copy of layer ``op`` (its config and weights; the kernel
    times ``kernel_scale``) — int8-friendly forms for hard-swish and Flatten; stateless
    operations (``x + 3`` and the like) are reused as they are."""
    import keras
    from keras import ops

    if not isinstance(op, keras.layers.Layer):
        return op
    kind = type(op).__name__
    if kind == "Activation" and _activation_name(op) in _HARD_SWISH:
        return unfused_hard_swish
    if kind == "Flatten":
        def flatten(x):
            if any(d is None for d in x.shape[1:]):
                raise NotRecognised(f"{op.name}: Flatten of a dynamically shaped tensor")
            return ops.reshape(x, (-1, int(np.prod(x.shape[1:]))))

        return flatten
    if _graph(op) is not None:  # a nested model in the head: rebuild it from copies too
        return lambda *args, **kwargs: _rebuild_plain(op)(*args, **kwargs)
    try:
        layer = type(op).from_config(op.get_config())
    except Exception as exc:
        raise NotRecognised(f"cannot copy layer {op.name} ({kind}): {first_line(exc)[:100]}") from None

    def call(*args, **kwargs):
        out = layer(*args, **kwargs)
        weights = op.get_weights()
        if kernel_scale != 1.0:
            weights = [weights[0] * kernel_scale] + weights[1:]
        layer.set_weights(weights)
        return out

    return call


def _rebuild_plain(model):
    """A copy of functional ``model`` made of copies of its layers."""
    import keras

    inputs = [keras.Input(batch_shape=t.shape, dtype=t.dtype) for t in model.inputs]
    return keras.Model(_one(inputs), _graph(model)._run_through_graph(inputs, operation_fn=_copy), name=model.name)


__all__ = ["Rewrite", "TOLERANCE", "int8_rewrite", "max_difference", "rewrite_mobilenet_v3"]
