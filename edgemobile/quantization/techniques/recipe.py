"""Recipes: which techniques a full-integer conversion runs, in which order, with which options.

A :class:`Recipe` is an ordered list of :class:`.base.TechniqueConfig` plus the engine's own
option (how many calibration images the Keras-side techniques use). Its flat form
(:meth:`Recipe.as_dict`: one field per option of every registered technique) is what
provenance records, what the API's dict form and the CLI flags set, and what
:meth:`Recipe.replace` changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from edgemobile.errors import EdgeMobileError
from edgemobile.quantization.techniques import registry
from edgemobile.quantization.techniques.base import Statistic, Technique, TechniqueConfig

DEFAULT_TECHNIQUE_IMAGES = 256
TECHNIQUE_IMAGES_FIELD = "technique_images"
PLAIN_LABEL = "plain converter (min/max)"


def configure(name: str, **options: Any) -> TechniqueConfig:
    """A technique's configuration: ``options`` over its defaults, checked.

    Args:
        name: a registered technique's name.
        options: values by option field (the switch too: e.g. ``ranges="percentile"``).
    """
    technique = registry.get(name)
    known = {option.field: option for option in technique.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise EdgeMobileError(f"technique {name!r} has no option {', '.join(unknown)}; "
                              f"its options: {', '.join(known)}")
    values = {field: options.get(field, option.default) for field, option in known.items()}
    for field, value in values.items():
        known[field].check(value)
    return TechniqueConfig(name, tuple(values.items()))


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The techniques a full-integer conversion runs, in order (see the module docstring).

    The flat option fields read as attributes (``recipe.ranges``, ``recipe.adaround``,
    ``recipe.adaround_iterations``): a technique left out reads as its switch's ``off`` value
    and its other options' defaults."""

    steps: tuple[TechniqueConfig, ...] = ()
    technique_images: int = DEFAULT_TECHNIQUE_IMAGES

    def __post_init__(self) -> None:
        if not isinstance(self.technique_images, int) or self.technique_images < 1:
            raise EdgeMobileError(f"technique images must be a positive number, not {self.technique_images!r}")
        names = [step.name for step in self.steps]
        if len(set(names)) != len(names):
            raise EdgeMobileError(f"a recipe runs each technique once, not {names}")
        for step in self.steps:
            registry.get(step.name)

    @classmethod
    def of(cls, *steps: str | TechniqueConfig, technique_images: int = DEFAULT_TECHNIQUE_IMAGES) -> "Recipe":
        """A recipe from technique names (default options) or configurations, in order.

        Args:
            steps: names or :class:`TechniqueConfig` (from :func:`configure`).
            technique_images: calibration images the Keras-side techniques use.
        """
        configs = [configure(step) if isinstance(step, str) else step for step in steps]
        return cls(tuple(c for c in configs if not _off(c)), technique_images)

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any], base: "Recipe | None" = None) -> "Recipe":
        """The recipe a flat form asks for; fields it leaves out come from ``base`` (default
        :data:`DEFAULT`). Techniques ``base`` runs keep their place; others join in
        registration order.

        Args:
            fields: option fields (as :meth:`as_dict` gives them) and ``technique_images``.
            base: the recipe to change.
        """
        base = DEFAULT if base is None else base
        values = dict(base.as_dict(), **fields)
        known = {option.field for technique in registry.registered() for option in technique.options}
        unknown = sorted(set(fields) - known - {TECHNIQUE_IMAGES_FIELD})
        if unknown:
            raise EdgeMobileError(f"unknown technique option {', '.join(unknown)}; "
                                  f"choose from {', '.join(sorted(known | {TECHNIQUE_IMAGES_FIELD}))}")
        order = [step.name for step in base.steps]
        order += [t.name for t in registry.registered() if t.name not in order]
        configs = []
        for name in order:
            technique = registry.get(name)
            off = values[technique.switch.field] == technique.switch.off
            set_for_nothing = [o for o in technique.settings if off and o.field in fields and fields[o.field] != o.default]
            if set_for_nothing:
                switch = technique.switch
                on = f"--{switch.flag}" if switch.flag and isinstance(switch.off, bool) else f"{switch.field}=..."
                raise EdgeMobileError(f"{set_for_nothing[0].what or set_for_nothing[0].field} set, but {name} is off: "
                                      f"turn it on ({on})")
            if not off:
                configs.append(configure(name, **{o.field: values[o.field] for o in technique.options}))
        return cls.of(*configs, technique_images=values[TECHNIQUE_IMAGES_FIELD])

    def replace(self, **fields: Any) -> "Recipe":
        """This recipe with some flat fields changed (``recipe.replace(adaround=False)``).

        Args:
            fields: option fields and ``technique_images``.
        """
        return Recipe.from_fields(fields, base=self)

    def techniques(self) -> list[tuple[Technique, dict[str, Any]]]:
        """(technique, its option values) for each step, in order."""
        return [(registry.get(step.name), step.settings()) for step in self.steps]

    def includes(self, name: str) -> bool:
        """True when the recipe runs the technique ``name``.

        Args:
            name: a technique's name.
        """
        return any(step.name == name for step in self.steps)

    @property
    def needs(self) -> frozenset[Statistic]:
        """The statistics the recipe's techniques declared."""
        return frozenset().union(*(technique.needs for technique, _ in self.techniques()))

    @property
    def keras_side(self) -> bool:
        """True when the Keras model is changed before conversion."""
        return any(technique.changes_keras_model for technique, _ in self.techniques())

    @property
    def range_method(self) -> str:
        """The activation ranges handed to the converter (and simulated): min/max unless a
        technique chooses them."""
        for technique, options in self.techniques():
            if technique.range_method is not None:
                return technique.range_method(options)
        return "minmax"

    def label(self) -> str:
        """A readable name: the techniques' labels in order ("mse ranges + equalization + ...")."""
        parts = [technique.describe(options) for technique, options in self.techniques()]
        return " + ".join(parts) if parts else PLAIN_LABEL

    def as_dict(self) -> dict[str, Any]:
        """The flat form: every registered technique's option fields (a technique left out:
        its switch off, its other options at their defaults) and ``technique_images``."""
        configured = {step.name: step.settings() for step in self.steps}
        flat: dict[str, Any] = {}
        for technique in registry.registered():  # the switches first, as provenance has always listed them
            values = configured.get(technique.name)
            flat[technique.switch.field] = technique.switch.off if values is None else values[technique.switch.field]
        flat[TECHNIQUE_IMAGES_FIELD] = self.technique_images
        for technique in registry.registered():
            values = configured.get(technique.name)
            for option in technique.settings:
                flat[option.field] = option.default if values is None else values[option.field]
        return flat

    def __getattr__(self, field: str) -> Any:
        if field.startswith("_"):
            raise AttributeError(field)
        flat = self.as_dict()
        if field in flat:
            return flat[field]
        raise AttributeError(f"a recipe has no option {field!r}")


def _off(config: TechniqueConfig) -> bool:
    """True for a configuration whose switch is off (it would do nothing)."""
    technique = registry.get(config.name)
    return config.settings()[technique.switch.field] == technique.switch.off


PLAIN = Recipe()
DEFAULT = Recipe.of("ranges", "equalization", "bias_correction", "adaround")


def everything(recipe: Recipe) -> Recipe:
    """``recipe`` with every registered technique switched on at its default (its other
    options as ``recipe`` has them)."""
    return recipe.replace(**{t.switch.field: t.switch.default for t in registry.registered()})


def ablation_recipes(default: Recipe) -> list[tuple[str, Recipe]]:
    """(label, recipe) rows of ``report --ablation``: the plain converter, each registered
    technique alone, ``default``, and every technique together when that is not ``default``.

    Args:
        default: the recipe the report's other rows use.
    """
    rows = [("plain converter", PLAIN)]
    rows += [(t.ablation_label, Recipe.of(t.name)) for t in registry.registered()]
    rows.append((f"default ({default.label()})", default))
    together = everything(default)
    if together != default:
        rows.append((f"all ({together.label()})", together))
    return rows


def recipe_from(techniques: Any) -> Recipe:
    """The recipe the API's ``techniques=`` argument asks for.

    Args:
        techniques: None (:data:`DEFAULT`), ``"plain"``, a :class:`Recipe`, a dict of flat
            option fields (over :data:`DEFAULT`), or a list of technique names and
            :class:`TechniqueConfig` (a recipe in that order).
    """
    if techniques is None:
        return DEFAULT
    if isinstance(techniques, Recipe):
        return techniques
    if techniques == "plain":
        return PLAIN
    if isinstance(techniques, Mapping):
        return DEFAULT.replace(**techniques)
    if isinstance(techniques, (list, tuple)) and all(isinstance(t, (str, TechniqueConfig)) for t in techniques):
        return Recipe.of(*techniques)
    raise EdgeMobileError("techniques: give a Recipe, a list of technique names/configs, a dict of option fields "
                          f"or 'plain', not {techniques!r}")

