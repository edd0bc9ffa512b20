"""Reparameterization of MobileOne: the train-time (multi-branch) model folded into the
inference-time one (one conv with bias per block), exactly.

BatchNorm is folded into each branch, 1×1 kernels are padded to 3×3, the identity branch
becomes a centred one-hot kernel, and the branches are summed (in float64, stored as float32).
"""

from __future__ import annotations

import numpy as np

from edgemobile.networks.mobileone_architecture import (
    BlockSpec,
    block_specs,
    head_kwargs,
    mobileone_graph,
    model_form,
    model_variant_key,
)


def reparameterize(model):
    """The inference-time model computing exactly what train-time ``model`` computes in
    inference mode (BatchNorm with its moving statistics).

    Each MobileOneBlock's branches are folded into one kernel and bias (in float64, stored
    as float32): every conv+BN becomes ``W·γ/σ`` and ``β − μ·γ/σ`` with ``σ = √(var + ε)``;
    the 1×1 scale kernel is zero-padded to k×k; the identity BN becomes a centred one-hot
    kernel scaled the same way; the results are summed. SE and classifier weights are copied.
    """
    if model_form(model) != "train":
        raise ValueError(f"model {model.name!r} is already in inference form")
    key = model_variant_key(model)
    fused = mobileone_graph(key, inference_mode=True, **head_kwargs(model))
    for block in block_specs(key):
        kernel, bias = fused_kernel_bias(model, block)
        fused.get_layer(f"{block.name}_reparam_conv").set_weights([kernel, bias])
        if block.use_se:
            for part in ("se_reduce", "se_expand"):
                fused.get_layer(f"{block.name}_{part}").set_weights(model.get_layer(f"{block.name}_{part}").get_weights())
    if any(layer.name == "linear" for layer in model.layers):
        fused.get_layer("linear").set_weights(model.get_layer("linear").get_weights())
    return fused


def _fold_bn(kernel: np.ndarray, bn_layer, out_axis: int) -> tuple[np.ndarray, np.ndarray]:
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn_layer.get_weights())
    t = gamma / np.sqrt(var + bn_layer.epsilon)
    shape = [1] * kernel.ndim
    shape[out_axis] = -1
    return kernel * t.reshape(shape), beta - mean * t


def fused_kernel_bias(model, block: BlockSpec) -> tuple[np.ndarray, np.ndarray]:
    """Folded (kernel, bias) of one MobileOneBlock of train-time ``model``, Keras layout."""
    k, name = block.kernel_size, block.name
    # Keras layouts: Conv2D (k, k, in, out) — out axis 3; DepthwiseConv2D (k, k, C, 1) — axis 2.
    out_axis = 2 if block.depthwise else 3
    shape = (k, k, block.in_channels, 1) if block.depthwise else (k, k, block.in_channels, block.out_channels)
    kernel = np.zeros(shape, np.float64)
    bias = np.zeros(block.out_channels, np.float64)
    for i in range(block.num_conv_branches):
        w = np.asarray(model.get_layer(f"{name}_rbr_conv_{i}_conv").get_weights()[0], np.float64)
        w, b = _fold_bn(w, model.get_layer(f"{name}_rbr_conv_{i}_bn"), out_axis)
        kernel += w
        bias += b
    if block.has_scale:
        w = np.asarray(model.get_layer(f"{name}_rbr_scale_conv").get_weights()[0], np.float64)
        w, b = _fold_bn(w, model.get_layer(f"{name}_rbr_scale_bn"), out_axis)
        kernel[k // 2, k // 2] += w[0, 0]
        bias += b
    if block.has_identity:
        identity = np.zeros(shape, np.float64)
        channels = np.arange(block.in_channels)
        if block.depthwise:
            identity[k // 2, k // 2, channels, 0] = 1.0
        else:
            identity[k // 2, k // 2, channels, channels] = 1.0
        w, b = _fold_bn(identity, model.get_layer(f"{name}_rbr_skip"), out_axis)
        kernel += w
        bias += b
    return kernel.astype(np.float32), bias.astype(np.float32)



__all__ = ["fused_kernel_bias", "reparameterize"]
