"""Loading weights into MobileOne models: PyTorch state_dict names and layouts mapped onto
the Keras layers (and back), timm's key names renamed to Apple's, a checkpoint's form (fused
or unfused) told from its keys, and PyTorch, safetensors or Keras weight files loaded
all-or-nothing.

Apple's ``mobileone_sX.pth.tar`` (inference-time) and ``mobileone_sX_unfused.pth.tar``
(train-time) checkpoints and timm's ``mobileone_sX.apple_in1k`` safetensors (train-time,
timm key names) are read by :mod:`edgemobile.networks.checkpoints` without torch.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgemobile.errors import EdgeMobileError, first_line
from edgemobile.networks.checkpoints import detect_format, read_state_dict
from edgemobile.networks.mobileone_architecture import model_form

_KERAS_LAYER = re.compile(
    r"(stage\d+(?:_\d+)?)_(rbr_conv_\d+_conv|rbr_conv_\d+_bn|rbr_scale_conv|rbr_scale_bn|rbr_skip"
    r"|reparam_conv|se_reduce|se_expand)"
)
_BN_KEYS = ("weight", "bias", "running_mean", "running_var")  # Keras: gamma, beta, moving mean/var


def torch_module_path(layer_name: str) -> str | None:
    """PyTorch module path of a Keras layer (``stage2_3_rbr_conv_1_bn`` → ``stage2.3.rbr_conv.1.bn``)."""
    if layer_name == "linear":
        return "linear"
    match = _KERAS_LAYER.fullmatch(layer_name)
    if not match:
        return None
    block = match.group(1).replace("_", ".")
    part = match.group(2)
    part = re.sub(r"^rbr_conv_(\d+)_", r"rbr_conv.\1.", part)
    part = {"rbr_scale_conv": "rbr_scale.conv", "rbr_scale_bn": "rbr_scale.bn",
            "se_reduce": "se.reduce", "se_expand": "se.expand"}.get(part, part)
    return f"{block}.{part}"


def _torch_params(layer) -> dict[str, tuple[int, ...]]:
    """``{param: torch shape}`` of a layer; order matches ``layer.get_weights()``."""
    import keras

    weights = layer.get_weights()
    if isinstance(layer, keras.layers.BatchNormalization):
        return {k: tuple(w.shape) for k, w in zip(_BN_KEYS, weights)}
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw, c, m = weights[0].shape
        params = {"weight": (c * m, 1, kh, kw)}
    elif isinstance(layer, keras.layers.Conv2D):
        kh, kw, i, o = weights[0].shape
        params = {"weight": (o, i, kh, kw)}
    elif isinstance(layer, keras.layers.Dense):
        i, o = weights[0].shape
        params = {"weight": (o, i)}
    else:
        raise TypeError(f"no PyTorch mapping for layer {layer.name} ({type(layer).__name__})")
    if len(weights) > 1:
        params["bias"] = tuple(weights[1].shape)
    return params


def _to_keras(layer, param: str, value: np.ndarray) -> np.ndarray:
    import keras

    if param == "weight" and isinstance(layer, keras.layers.DepthwiseConv2D):
        return value.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    if param == "weight" and isinstance(layer, keras.layers.Conv2D):
        return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if param == "weight" and isinstance(layer, keras.layers.Dense):
        return value.T
    return value


def _to_torch(layer, param: str, value: np.ndarray) -> np.ndarray:
    import keras

    if param == "weight" and isinstance(layer, keras.layers.DepthwiseConv2D):
        return value.transpose(2, 3, 0, 1)  # (kh, kw, C, 1) -> (C, 1, kh, kw)
    if param == "weight" and isinstance(layer, keras.layers.Conv2D):
        return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    if param == "weight" and isinstance(layer, keras.layers.Dense):
        return value.T
    return value


def _mapped_layers(model) -> Iterable[tuple[Any, str]]:
    for layer in model.layers:
        if layer.weights:
            path = torch_module_path(layer.name)
            if path is None:
                raise ValueError(f"layer {layer.name!r} has weights but no PyTorch name")
            yield layer, path


def set_state_dict(model, state: dict[str, np.ndarray], source: str | Path = "state_dict") -> None:
    """Load an Apple-named PyTorch-layout state_dict into ``model``, all-or-nothing.

    Raises :class:`EdgeMobileError` listing missing keys, unexpected keys and shape mismatches
    (``num_batches_tracked`` is ignored).
    """
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if not any(layer.name == "linear" for layer in model.layers):  # headless model: ignore the classifier
        state = {k: v for k, v in state.items() if not k.startswith("linear.")}
    expected: dict[str, tuple[int, ...]] = {}
    plan = []
    for layer, path in _mapped_layers(model):
        params = _torch_params(layer)
        for param, shape in params.items():
            expected[f"{path}.{param}"] = shape
        plan.append((layer, path, list(params)))
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {expected[k]}"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    if missing or unexpected or mismatched:
        form = model_form(model)
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys ({_listing(missing)})")
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected keys ({_listing(unexpected)})")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatches, checkpoint vs model ({_listing(mismatched)})")
        raise EdgeMobileError(
            f"{source}: does not fit {model.name} ({form}-time form): " + "; ".join(problems)
        )
    for layer, path, params in plan:
        layer.set_weights([
            _to_keras(layer, p, np.asarray(state[f"{path}.{p}"], np.float32)) for p in params
        ])


def _listing(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … {len(items) - limit} more" if len(items) > limit else "")


def export_state_dict(model) -> dict[str, np.ndarray]:
    """The model's weights as an Apple-named PyTorch-layout state_dict (float32 arrays)."""
    state: dict[str, np.ndarray] = {}
    for layer, path in _mapped_layers(model):
        for (param, _), value in zip(_torch_params(layer).items(), layer.get_weights()):
            state[f"{path}.{param}"] = np.ascontiguousarray(_to_torch(layer, param, np.asarray(value, np.float32)))
    return state


_TIMM_RULES = (
    (re.compile(r"^stem\."), "stage0."),
    (re.compile(r"^stages\.(\d+)\."), lambda m: f"stage{int(m.group(1)) + 1}."),
    (re.compile(r"\.conv_kxk\."), ".rbr_conv."),
    (re.compile(r"\.conv_scale\."), ".rbr_scale."),
    (re.compile(r"\.identity\."), ".rbr_skip."),
    (re.compile(r"\.attn\.fc1\."), ".se.reduce."),
    (re.compile(r"\.attn\.fc2\."), ".se.expand."),
    (re.compile(r"^head\.fc\."), "linear."),
)


def to_apple_names(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename timm's ByobNet MobileOne keys to Apple's (identity for Apple checkpoints).

    timm → Apple: ``stem.`` → ``stage0.``, ``stages.{i}.{j}.`` → ``stage{i+1}.{j}.``,
    ``conv_kxk`` → ``rbr_conv``, ``conv_scale`` → ``rbr_scale``, ``identity`` → ``rbr_skip``,
    ``attn.fc1/fc2`` → ``se.reduce/expand``, ``head.fc`` → ``linear``.
    """
    if not any(k.startswith(("stem.", "stages.", "head.")) for k in state):
        return dict(state)
    renamed = {}
    for key, value in state.items():
        for pattern, repl in _TIMM_RULES:
            key = pattern.sub(repl, key)
        renamed[key] = value
    return renamed


def checkpoint_form(state: dict[str, np.ndarray], source: str | Path = "checkpoint") -> str:
    """"inference" (``reparam_conv`` keys) or "train" (``rbr_conv`` keys) of an Apple-named state."""
    fused = any(".reparam_conv." in k for k in state)
    unfused = any(".rbr_conv." in k for k in state)
    if fused and unfused:
        raise EdgeMobileError(f"{source}: mixes fused (reparam_conv) and unfused (rbr_conv) MobileOne blocks")
    if fused:
        return "inference"
    if unfused:
        return "train"
    raise EdgeMobileError(
        f"{source}: not a MobileOne checkpoint (no reparam_conv / rbr_conv / conv_kxk keys; first keys: "
        f"{_listing(sorted(state), 3)})"
    )



def load_keras_weights(model, path: Path) -> None:
    """Load a Keras weights file into ``model``, turning h5py/Keras failures into one-line errors."""
    try:
        with warnings.catch_warnings():  # Keras warns per skipped group before raising anyway
            warnings.simplefilter("ignore", UserWarning)
            model.load_weights(str(path))
    except Exception as exc:  # h5py, Keras and TF raise many types for a wrong file
        raise EdgeMobileError(f"{path}: not {model.name} weights ({first_line(exc)[:200]})") from None


def load_weights(model, path: str | Path) -> None:
    """Load a PyTorch (Apple or timm names), safetensors or Keras weights file into ``model``.

    The checkpoint's form must match the model's: an unfused checkpoint goes into the
    train-time model (then :func:`reparameterize`), a fused one into the inference-time model.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt in ("keras_h5", "keras_zip"):
        load_keras_weights(model, path)
        return
    state = to_apple_names(read_state_dict(path))
    form, wanted = checkpoint_form(state, path), model_form(model)
    if form != wanted:
        hint = ("build the train-time model (build_train_model / inference_mode=False), load it there and "
                "reparameterize()" if form == "train" else
                "a fused checkpoint cannot be un-fused; build the inference-time model (inference_mode=True)")
        raise EdgeMobileError(f"{path}: a {form}-time checkpoint, but {model.name} is the {wanted}-time form; {hint}")
    set_state_dict(model, state, source=path)



__all__ = [
    "checkpoint_form",
    "export_state_dict",
    "load_keras_weights",
    "load_weights",
    "set_state_dict",
    "to_apple_names",
    "torch_module_path",
]
