"""How closely a quantized model follows its float model on a fixed set of images: top-1
agreement with its 95 % interval, the output error (the mean squared distance between the
two models' probabilities: finer than agreement on a few images, and unlike a KL divergence
not dominated by the classes an int8 output rounds to 0), and top-1 against labels where the
images have them.

The float model reads the normalized images; the quantized one is fed what a device feeds
(:meth:`~edgemobile.runtime.interpreter.TFLiteClassifier.encode_as_device`), as ``eval`` does.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgemobile.intervals import wilson
from edgemobile.runtime.interpreter import TFLiteClassifier, to_probabilities


@dataclasses.dataclass(frozen=True)
class Agreement:
    images: int
    agree: int  # images whose top-1 is the float model's
    error: float  # mean over images of the squared distance between the probability vectors
    correct: int | None = None  # images whose top-1 is the label (None: no labels)
    float_correct: int | None = None

    @property
    def rate(self) -> float:
        return self.agree / self.images

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.agree, self.images)

    @property
    def top1(self) -> float | None:
        return None if self.correct is None else self.correct / self.images

    @property
    def drop(self) -> float | None:
        """Float top-1 minus this top-1 (fractions)."""
        return None if self.correct is None else (self.float_correct - self.correct) / self.images

    def as_dict(self) -> dict:
        low, high = self.interval
        return {"images": self.images, "agreement": round(self.rate, 4), "agreement_ci95": [round(low, 4),
                round(high, 4)], "output_error": round(self.error, 7),
                "top1": None if self.top1 is None else round(self.top1, 4),
                "drop": None if self.drop is None else round(self.drop, 4)}


class Judge:
    """Measures quantized models against one float model on the same images."""

    def __init__(self, float_model: bytes, images: np.ndarray, spec, labels=None):
        """``images``: normalized by ``spec`` (None: fed quantized); ``labels``: their class indices, or None."""
        self.images, self.spec = images, spec
        self.labels = None if labels is None else np.asarray(labels)
        self.reference = self._probabilities(TFLiteClassifier(bytes(float_model), source="float model"), False)
        self.reference_top1 = self.reference.argmax(-1)

    def _probabilities(self, model: TFLiteClassifier, as_device: bool) -> np.ndarray:
        as_device = as_device and self.spec is not None  # without a spec: the images quantized
        scores = np.stack([model.run_encoded(model.encode_as_device(x, self.spec)) if as_device else model.run(x)
                           for x in self.images])
        return to_probabilities(scores, model.outputs_probabilities).astype(np.float64)

    def __call__(self, model: bytes, source: str = "candidate") -> Agreement:
        probabilities = self._probabilities(TFLiteClassifier(bytes(model), source=source), True)
        top1 = probabilities.argmax(-1)
        error = float(np.mean(np.sum((probabilities - self.reference) ** 2, axis=-1)))
        correct = float_correct = None
        if self.labels is not None:
            correct = int(np.sum(top1 == self.labels))
            float_correct = int(np.sum(self.reference_top1 == self.labels))
        return Agreement(len(self.images), int(np.sum(top1 == self.reference_top1)), error, correct, float_correct)
