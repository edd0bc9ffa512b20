"""The types of the quantization engine: a technique, its options, the statistics it asks the
engine to gather, a technique's configuration in a recipe, and what each step is given.

A :class:`Technique` declares *what* it needs and *where* it acts; the engine
(:mod:`edgemobile.quantization.engine`) decides *when*, streams the calibration images once
and hands each step exactly what it declared:

``before_layers``  a whole-model rewrite on the BatchNorm-folded model (equalization); when
                   ``keeps_float_function`` the engine checks the float outputs afterwards
                   and drops the step if they changed
``kernel_step``    per conv/dense layer, from float statistics alone (AdaRound): runs on a
                   second thread ahead of the int8 stream and must leave the kernel on the
                   converter's int8 grid
``stream_step``    per conv/dense layer, inside the int8 stream, given the layer's int8 mean
                   output before its output is computed (bias correction)
``after_layers``   a whole-model step after the layer pass (e.g. fine-tuning: the float
                   teacher, the chosen activation ranges and the device input encoding are in
                   its :class:`ModelContext`)
``converter_step`` a hook on the calibrated float flatbuffer before the converter quantizes
                   it (the range choice); it finds what its technique's model step returned
                   in ``report[technique.name]`` (e.g. ranges a fine-tuning step learned)
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Mapping

import numpy as np

from edgemobile.errors import EdgeMobileError


class Statistic(enum.Enum):
    """What the engine's streamed float pass (and int8 stream) gathers for the techniques."""

    ACTIVATION_RANGES = "the int8 range of every activation tensor, chosen as the converter will"
    ACTIVATION_HISTOGRAMS = "a sample of every activation tensor's values, for range choices other than min/max"
    FLOAT_MEANS = "each conv/dense layer's float mean output per channel"
    PATCH_MOMENTS = "each conv/dense layer's input-patch moments on the float inputs"
    INT8_MEANS = "each conv/dense layer's mean output in the int8 simulation (runs the int8 stream)"


@dataclasses.dataclass(frozen=True)
class Option:
    """One setting of a technique.

    ``field`` is its key in a recipe's flat form (``Recipe.as_dict()``: provenance "options",
    the API's dict form, the CLI's destination). A technique's *switch* also has ``off``: the
    value that leaves the technique out (``False``, or ``"minmax"`` for the range choice).
    ``flag`` is the CLI flag without dashes (None: no flag); a boolean switch gets
    ``--flag/--no-flag``, a switch with ``choices`` gets ``--flag {choices}``."""

    field: str
    default: Any
    help: str = ""
    flag: str | None = None
    off: Any = None
    choices: tuple | None = None
    minimum: int | float | None = None
    what: str = ""  # how error messages name it ("range method")

    def check(self, value: Any) -> None:
        """EdgeMobileError when ``value`` is not allowed."""
        if self.choices is not None and value not in self.choices:
            raise EdgeMobileError(f"unknown {self.what or self.field} {value!r}; choose from {', '.join(self.choices)}")
        if self.minimum is not None and not value >= self.minimum:
            raise EdgeMobileError(f"{self.what or self.field} must be at least {self.minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelContext:
    """What a whole-model step is given.

    ``model`` is the BatchNorm-folded copy the engine prepares (steps change it in place);
    ``float_model`` the user's model, untouched (a teacher); ``images`` the technique images
    (normalized, NHWC); ``spec`` the model's PreprocessSpec (device input encoding, see
    :func:`edgemobile.quantization.simulate.device_input`); ``activation_ranges`` the ranges
    chosen in the layer pass (layer name → (lo, hi); empty before it); ``recipe`` the whole
    recipe; ``calibration_images`` every calibration image (``images`` is their first
    ``recipe.technique_images``); ``float_weights`` after the layer pass: ``model``'s
    conv/dense weights before it (:func:`edgemobile.quantization.simulate.snapshot`), i.e.
    the float function in ``model``'s own layout."""

    model: Any
    float_model: Any
    images: np.ndarray
    spec: Any
    progress: bool
    recipe: Any
    activation_ranges: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    calibration_images: np.ndarray | None = None
    float_weights: Mapping[str, list] | None = None


@dataclasses.dataclass
class LayerContext:
    """What a per-layer step is given: the conv/dense ``layer``
    (:class:`edgemobile.quantization.graph.LinearLayer`) and the statistics its recipe
    declared — ``moments`` (:class:`edgemobile.quantization.rounding.PatchMoments`),
    ``float_mean`` and, in the int8 stream, ``int8_mean`` (per output channel)."""

    layer: Any
    recipe: Any
    moments: Any = None
    float_mean: np.ndarray | None = None
    int8_mean: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class ConverterContext:
    """What a converter step is given: ``representative()`` replays the calibration images
    (batches, as the converter's generator yields them), ``report`` the conversion's report
    (a step records itself under its technique's name), ``progress_total`` the images a
    progress bar counts (0: no bar), ``model`` the Keras model the converter is given."""

    representative: Callable
    report: dict
    progress_total: int
    model: Any = None


ModelStep = Callable[[ModelContext, Mapping[str, Any]], Any]
LayerStep = Callable[[LayerContext, Mapping[str, Any]], dict]
ConverterStep = Callable[[ConverterContext, Mapping[str, Any]], Callable[[bytes], bytes]]


@dataclasses.dataclass(frozen=True)
class Technique:
    """A post-training technique: its name, its options, the statistics it needs and its steps
    (see the module docstring; a technique has any of them).

    ``switch`` turns it on (its ``default`` is the value when on); ``settings`` are its other
    options; ``describe(options)`` is its part of a recipe's label; ``ablation_label`` names
    its row in ``report --ablation`` (the technique alone). A model step's return value is
    recorded in the report under the technique's name; a layer step's dict joins the layer's
    row."""

    name: str
    switch: Option
    describe: Callable[[Mapping[str, Any]], str]
    ablation_label: str
    settings: tuple[Option, ...] = ()
    needs: frozenset[Statistic] = frozenset()
    before_layers: ModelStep | None = None
    keeps_float_function: bool = False
    kernel_step: LayerStep | None = None
    stream_step: LayerStep | None = None
    after_layers: ModelStep | None = None
    range_method: Callable[[Mapping[str, Any]], str] | None = None  # the activation ranges it hands the converter
    converter_step: ConverterStep | None = None

    @property
    def options(self) -> tuple[Option, ...]:
        return (self.switch, *self.settings)

    @property
    def changes_keras_model(self) -> bool:
        return any(step is not None for step in (self.before_layers, self.kernel_step, self.stream_step,
                                                 self.after_layers))

    @property
    def layer_steps(self) -> bool:
        return self.kernel_step is not None or self.stream_step is not None


@dataclasses.dataclass(frozen=True)
class TechniqueConfig:
    """One entry of a recipe: a registered technique's name and its option values (every
    option of the technique, defaults filled in: see
    :func:`edgemobile.quantization.techniques.recipe.configure`)."""

    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def settings(self) -> dict[str, Any]:
        return dict(self.options)
