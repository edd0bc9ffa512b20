"""Will MediaPipe Tasks' ImageClassifier (Android, Python, web: one C++ core) accept a model?

The rules are those MediaPipe enforces when it builds the classifier graph (its
``image_tensor_specs.cc``, ``image_preprocessing_graph.cc`` and
``classification_postprocessing_graph.cc``), plus one it cannot see: with a uint8 input it
feeds raw 0..255 pixels and ignores NormalizationOptions, so the input quantization itself
must carry the normalization. Checking here turns an on-device failure into a message at
export time.
"""

from __future__ import annotations

from edgemobile.metadata.reader import ModelSource, read_model_parts
from edgemobile.metadata.schema import FILE_TENSOR_AXIS_LABELS, ModelMeta
from edgemobile.tflite.model import ModelView

# uint8 input: |zero_point - mean| and |scale * std - 1| tolerated (half a level of rounding
# in the zero point, 1 % in the scale).
_ZERO_POINT_TOLERANCE = 1.0
_SCALE_TOLERANCE = 0.01


def mediapipe_issues(model: ModelSource) -> list[str]:
    """Reasons MediaPipe's ImageClassifier would refuse ``model`` or feed it the wrong
    pixels; an empty list means none were found."""
    return _issues(*read_model_parts(model))


def _issues(view: ModelView, meta: ModelMeta | None, files: dict[str, bytes]) -> list[str]:
    issues: list[str] = []
    if view.num_subgraphs != 1:
        issues.append(f"MediaPipe needs a single subgraph, the model has {view.num_subgraphs}")
    if len(view.inputs) != 1:
        issues.append(f"MediaPipe needs a single input, the model has {len(view.inputs)}")
        return issues
    image = view.inputs[0]
    if len(image.shape) != 4 or image.shape[0] != 1 or image.shape[3] not in (3, 4):
        issues.append(f"input shape {list(image.shape)} is not [1, height, width, 3]")
    if image.dtype not in ("uint8", "float32"):
        issues.append(
            f"input type {image.dtype}: MediaPipe accepts uint8 or float32 image inputs only "
            "(convert with inference_input_type uint8 or float32)"
        )
    for i, out in enumerate(view.outputs):
        if out.dtype not in ("uint8", "float32", "bool"):
            issues.append(
                f"output {i} type {out.dtype}: MediaPipe accepts uint8 or float32 scores only"
            )
    tensor_meta = meta.inputs[0] if meta is not None and meta.inputs else None
    norm = tensor_meta.normalization if tensor_meta is not None else None
    if tensor_meta is not None and tensor_meta.content not in (None, "image"):
        issues.append(f"input metadata has {tensor_meta.content} content, not ImageProperties")
    if (
        tensor_meta is not None
        and tensor_meta.content == "image"
        and tensor_meta.color_space != "RGB"
    ):
        issues.append(f"input color space is {tensor_meta.color_space}; MediaPipe needs RGB")
    if norm is not None:
        mean, std = norm
        if len(mean) != len(std) or len(mean) not in (1, 3):
            issues.append(f"NormalizationOptions need 1 or 3 values, got {len(mean)}/{len(std)}")
    if image.dtype == "float32":
        if norm is None:
            issues.append("float32 input without NormalizationOptions metadata")
        elif len(set(norm[0])) > 1 or len(set(norm[1])) > 1:
            issues.append(
                f"per-channel normalization mean={_fmt(norm[0])} std={_fmt(norm[1])}: MediaPipe "
                "supports one mean/std for all channels; fold the normalization into the model "
                "(then mean=0, std=1)"
            )
    if image.dtype == "uint8" and norm is not None:
        issues.extend(_uint8_input_issues(image.scale, image.zero_point, norm))
    if meta is not None:
        if len(meta.outputs) != len(view.outputs):
            issues.append(
                f"{len(meta.outputs)} output tensor metadata for {len(view.outputs)} outputs"
            )
        for i, out_meta in enumerate(meta.outputs):
            if not out_meta.name:
                issues.append(f"output tensor metadata {i} has no name (MediaPipe crashes)")
            labels = [f for f in out_meta.files if f.type == FILE_TENSOR_AXIS_LABELS]
            if labels and i < len(view.outputs):
                payload = files.get(labels[0].name)
                if payload is None:
                    issues.append(f"labels file {labels[0].name} is not packed in the model")
                else:
                    count = len(payload.decode("utf-8", "replace").split("\n"))
                    count -= payload.endswith(b"\n")
                    classes = view.outputs[i].shape[-1] if view.outputs[i].shape else 0
                    if count != classes:
                        issues.append(
                            f"{labels[0].name} has {count} labels for {classes} output classes"
                        )
    return issues


def _uint8_input_issues(scale, zero_point, norm) -> list[str]:
    if len(scale) != 1 or len(zero_point) != 1:
        return ["uint8 input without per-tensor quantization parameters"]
    mean, std = norm
    if len(set(mean)) > 1 or len(set(std)) > 1:
        return [
            f"per-channel normalization mean={_fmt(mean)} std={_fmt(std)} with a uint8 input: "
            "MediaPipe feeds raw pixels, so fold the normalization into the model"
        ]
    m, s = mean[0], std[0]
    if abs(zero_point[0] - m) > _ZERO_POINT_TOLERANCE or abs(scale[0] * s - 1.0) > _SCALE_TOLERANCE:
        return [
            f"uint8 input quantization (scale={scale[0]:.6g}, zero_point={zero_point[0]}) "
            f"does not match the normalization (pixel-{m:g})/{s:g}: MediaPipe feeds raw "
            f"pixels, which needs scale={1 / s:.6g}, zero_point≈{m:g}"
        ]
    return []


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
