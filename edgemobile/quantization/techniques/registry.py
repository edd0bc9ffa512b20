"""The registered techniques, by name, in registration order (which orders the CLI flags, the
ablation rows and the options in provenance).

Adding a technique: write its module (one :class:`.base.Technique`), and add one line below.
"""

from __future__ import annotations

from edgemobile.errors import EdgeMobileError
from edgemobile.quantization.techniques import adaround, bias_correction, equalization, finetune, range_choice
from edgemobile.quantization.techniques.base import Technique

_REGISTRY: dict[str, Technique] = {}


def register(technique: Technique) -> Technique:
    """Add ``technique`` to the registry (after the ones already there).

    Args:
        technique: its name and option fields must not clash with a registered technique's.
    """
    fields = {option.field for known in _REGISTRY.values() for option in known.options}
    clash = [option.field for option in technique.options if option.field in fields]
    if technique.name in _REGISTRY or clash:
        raise EdgeMobileError(f"technique {technique.name!r} clashes with a registered one ({clash or 'its name'})")
    _REGISTRY[technique.name] = technique
    return technique


def unregister(name: str) -> None:
    """Remove a technique registered at run time (tests).

    Args:
        name: the technique's name.
    """
    _REGISTRY.pop(name, None)


def get(name: str) -> Technique:
    """The technique registered as ``name``.

    Args:
        name: a registered technique's name.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise EdgeMobileError(f"unknown technique {name!r}; choose from {', '.join(_REGISTRY)}") from None


def registered() -> list[Technique]:
    """Every registered technique, in registration order."""
    return list(_REGISTRY.values())


register(range_choice.TECHNIQUE)
register(equalization.TECHNIQUE)
register(bias_correction.TECHNIQUE)
register(adaround.TECHNIQUE)
register(finetune.TECHNIQUE)
