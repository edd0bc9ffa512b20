"""MobileNetV1 (Howard et al. 2017) from ``keras.applications.MobileNet``.

Preprocessing contract (model card / ``keras.applications.mobilenet.preprocess_input``):
resize the shorter side to resolution/0.875 (256 for 224), center-crop the resolution, and
scale pixels to [-1, 1] (``pixel / 127.5 - 1``). Output: softmax over the 1000 ImageNet
classes. Weights: the Keras ImageNet files ``mobilenet_<alpha>_<res>_tf.h5``.
"""

from __future__ import annotations

from pathlib import Path

from edgemobile.data.preprocessing import PreprocessSpec
from edgemobile.errors import EdgeMobileError, first_line
from edgemobile.networks.zoo import Family, ModelVariant, Weights

ALPHAS = (0.25, 0.5, 0.75, 1.0)
RESOLUTIONS = (128, 160, 192, 224)
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"

# Keras publishes no checksum for these files (its loader passes no file_hash), so none is
# pinned here: the first download is trusted, as Keras does, and its sha256 printed.
_ALPHA_TEXT = {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}


def keras_weights(alpha: float, resolution: int) -> Weights:
    filename = f"mobilenet_{_ALPHA_TEXT[alpha]}_{resolution}_tf.h5"
    return Weights(filename=filename, url=KERAS_WEIGHTS_URL + filename, checksum=None)


def build(variant: ModelVariant, weights_path: Path | None):
    """Keras MobileNet with a fixed input shape and softmax classifier."""
    import keras

    model = keras.applications.MobileNet(
        input_shape=(variant.resolution, variant.resolution, 3),
        alpha=variant.alpha,
        include_top=True,
        weights=None,
        classes=variant.num_classes,
        classifier_activation="softmax",
    )
    if weights_path is not None:
        load_keras_weights(model, weights_path, variant.name)
    return model


def load_keras_weights(model, path: Path, model_name: str) -> None:
    """Load a Keras weights file, turning h5py/Keras failures into one-line errors."""
    try:
        model.load_weights(str(path))
    except Exception as exc:  # h5py, Keras and TF raise a zoo of types for a wrong file
        raise EdgeMobileError(f"{path}: not {model_name} weights ({first_line(exc)[:200]})") from None


def make_variant(alpha: float | None, resolution: int) -> ModelVariant:
    return ModelVariant(
        family="mobilenet_v1",
        alpha=alpha,
        resolution=resolution,
        preprocess=PreprocessSpec.center_crop(resolution, mean=127.5, std=127.5),
        weights=keras_weights(alpha, resolution),
        builder=build,
        description=f"MobileNetV1 alpha {alpha}, {resolution}x{resolution}, ImageNet-1k",
        license="Apache-2.0 (Keras Applications weights)",
    )


FAMILIES = (
    Family(
        name="mobilenet_v1",
        aliases=("mobilenet", "mobilenetv1"),
        alphas=ALPHAS,
        resolutions=RESOLUTIONS,
        default_alpha=1.0,
        default_resolution=224,
        make_variant=make_variant,
        summary="MobileNetV1 (keras.applications.MobileNet), alpha 0.25-1.0, 128-224 px",
    ),
)

__all__ = ["FAMILIES", "build", "keras_weights", "load_keras_weights"]
