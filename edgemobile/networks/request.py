"""Which model a command works on, as one typed object: a zoo name with its alpha, resolution
and weights, or your own Keras model (a file or a ``keras.Model``) with its preprocessing and
labels. The API, the CLI and ``report``'s ``--model`` specs all build one and resolve it here."""

from __future__ import annotations

import dataclasses
from typing import Any

from edgemobile.errors import EdgeMobileError
from edgemobile.networks.user import is_model_file, user_variant
from edgemobile.networks.zoo import resolve as resolve_zoo_name

# ``report --model NAME:key=value,…``: the keys a spec may set (``label`` names its row).
SPEC_KEYS = ("alpha", "resolution", "weights", "label", "preprocess", "labels")
# The user-model settings a command's flags give every model-file spec that does not set its own.
USER_MODEL_KEYS = ("preprocess", "mean", "std", "crop_fraction", "labels", "label_folder")


def _as_tuple(value):
    return None if value is None else tuple(value) if isinstance(value, (list, tuple)) else (float(value),)


@dataclasses.dataclass(frozen=True)
class ModelRequest:
    """A model to build: ``model`` is a zoo name (``"mobilenet"``; with ``alpha``,
    ``resolution``, ``weights``: ``"imagenet"``, ``"none"`` or a file) or your Keras model (a
    ``.keras``/``.h5`` file or a ``keras.Model``; with ``preprocess`` — a zoo family's spec —
    or ``mean``/``std`` in 0..255 pixel units and ``crop_fraction``, and ``labels``: a file,
    or ``label_folder``'s class-name folders)."""

    model: Any
    alpha: float | None = None
    resolution: int | None = None
    weights: Any = None
    preprocess: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_fraction: float | None = None
    labels: Any = None
    label_folder: Any = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", _as_tuple(self.mean))
        object.__setattr__(self, "std", _as_tuple(self.std))

    @property
    def is_zoo_name(self) -> bool:
        return isinstance(self.model, str) and not is_model_file(self.model)

    @property
    def name(self) -> str:
        """The model as the user named it, for messages."""
        return str(self.model) if isinstance(self.model, str) or not hasattr(self.model, "name") else self.model.name

    def resolve(self):
        """(variant, weights): a zoo variant and its weights (``"imagenet"`` unless given), or
        your model's variant and its file; bad combinations fail in one line."""
        if self.is_zoo_name:
            given = [flag for flag, value in (("preprocess", self.preprocess), ("mean", self.mean),
                                              ("std", self.std), ("crop_fraction", self.crop_fraction))
                     if value is not None]
            if given:
                raise EdgeMobileError(f"{', '.join(given)}: only for your own Keras models; zoo model {self.model} "
                                      "has its own preprocessing")
            variant = resolve_zoo_name(self.model, self.alpha, self.resolution)
            if self.labels:
                raise EdgeMobileError(f"labels: zoo model {self.model} has the 1000 ImageNet classes")
            return variant, self.weights if self.weights is not None else "imagenet"
        if self.alpha is not None:
            raise EdgeMobileError("alpha: only for zoo models; a Keras model file has its own width")
        if self.weights not in (None, "imagenet"):
            raise EdgeMobileError("weights: only for zoo models; a Keras model file carries its weights")
        user = user_variant(self.model, self.preprocess, self.resolution, self.mean, self.std, self.crop_fraction,
                            self.labels, self.label_folder)
        return user.variant, str(user.path)

    @classmethod
    def parse(cls, text: str, **user_flags) -> tuple["ModelRequest", str | None]:
        """``report``'s ``NAME[:alpha=A,resolution=R,weights=FILE,label=TEXT]`` or
        ``FILE.keras[:preprocess=P,labels=FILE,label=TEXT]`` → (request, its row label).
        ``user_flags`` (:data:`USER_MODEL_KEYS`): the command's flags for a model file; a spec's
        own keys take precedence, zoo specs ignore them."""
        name, _, rest = text.partition(":")
        name = name.strip()
        if not name:
            raise EdgeMobileError(f"model spec {text!r}: no model name (NAME[:alpha=A,resolution=R,weights=FILE])")
        values: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in rest.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in SPEC_KEYS:
                raise EdgeMobileError(f"model spec {text!r}: expected key=value with key one of "
                                      f"{', '.join(SPEC_KEYS)}, got {item!r}")
            try:
                values[key] = float(value) if key == "alpha" else int(value) if key == "resolution" else value
            except ValueError:
                raise EdgeMobileError(f"model spec {text!r}: {key} must be a number, got {value!r}") from None
        label = values.pop("label", None)
        if is_model_file(name):
            values = {**{k: v for k, v in user_flags.items() if v is not None and k in USER_MODEL_KEYS}, **values}
        return cls(model=name, **values), label
