"""``edgemobile models`` / ``em.models()``: the zoo as a table — per family its alphas and
resolutions (defaults marked), its preprocessing and the weights files ``--weights imagenet``
downloads, and where they are cached. No TensorFlow."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from edgemobile.download import cache_dir
from edgemobile.networks.zoo import Family, families


@dataclasses.dataclass(frozen=True)
class FamilyListing:
    """One zoo family: its choices, defaults, default variant's preprocessing and weights."""

    name: str
    aliases: tuple[str, ...]
    summary: str
    alphas: tuple[float, ...]  # () when the family has no width multiplier
    default_alpha: float | None
    resolutions: tuple[int, ...]
    default_resolution: int
    preprocess: dict  # the default variant's PreprocessSpec
    preprocess_text: str  # in a few words: "crop 0.875, [-1, 1]"
    weights: tuple[dict, ...]  # per variant: alpha, resolution, file, url, cached_at (None: no published weights)

    @classmethod
    def of(cls, family: Family) -> "FamilyListing":
        variants = [family.make_variant(a, r) for a in family.alphas for r in family.resolutions]
        weights = tuple({"alpha": v.alpha, "resolution": v.resolution,
                         "file": v.weights.filename if v.weights else None,
                         "url": v.weights.url if v.weights else None,
                         "cached_at": str(cache_dir(v.weights.cache_subdir) / v.weights.filename) if v.weights
                         else None} for v in variants)
        spec = family.variant().preprocess
        return cls(family.name, family.aliases, family.summary, tuple(a for a in family.alphas if a is not None),
                   family.default_alpha, family.resolutions, family.default_resolution,
                   {**spec.to_dict(), "mean": list(spec.mean), "std": list(spec.std)},
                   spec.describe(short=True), weights)

    @property
    def default_weights(self) -> str | None:
        """The weights file of the default alpha and resolution."""
        for w in self.weights:
            if w["alpha"] == self.default_alpha and w["resolution"] == self.default_resolution:
                return w["file"]
        return None

    def as_dict(self) -> dict:
        return {"name": self.name, "aliases": list(self.aliases), "summary": self.summary,
                "alphas": list(self.alphas), "default_alpha": self.default_alpha,
                "resolutions": list(self.resolutions), "default_resolution": self.default_resolution,
                "preprocess": self.preprocess, "preprocess_text": self.preprocess_text,
                "default_weights": self.default_weights, "weights": [dict(w) for w in self.weights]}


@dataclasses.dataclass(frozen=True)
class ZooListing:
    """Every registered family; prints as the ``edgemobile models`` table."""

    families: tuple[FamilyListing, ...]
    cache: str  # the folder --weights imagenet downloads go to

    def __iter__(self):
        return iter(self.families)

    def __len__(self) -> int:
        return len(self.families)

    def as_dict(self) -> dict:
        return {"weights_cache": self.cache, "families": [f.as_dict() for f in self.families]}

    def __str__(self) -> str:
        header = ("family", "alpha", "resolution", "preprocessing", "--weights imagenet downloads")
        rows = [header]
        for f in self.families:
            files = {w["file"] for w in f.weights if w["file"]}
            more = f" (+{len(files) - 1}, one per alpha × resolution)" if len(files) > 1 else ""
            rows.append((f.name, _choices(f.alphas, f.default_alpha) or "-",
                         _choices(f.resolutions, f.default_resolution), f.preprocess_text,
                         (f.default_weights or "none published") + more))
        widths = [max(len(row[k]) for row in rows) for k in range(len(header) - 1)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows]
        lines.append("")
        lines.append("* default, used when --alpha/--resolution are omitted. crop F: the shorter side is "
                     "resized to resolution / F, then the centre square is cropped; [lo, hi]: the model "
                     "input's range")
        lines.append(f"weights are downloaded once and cached in {self.cache} (KERAS_HOME moves it); "
                     "--weights FILE uses a local file instead")
        lines.append("aliases:")
        lines += [f"  {f.name}: {', '.join(f.aliases)}" for f in self.families if f.aliases]
        return "\n".join(lines)

    __repr__ = __str__


def zoo_listing() -> ZooListing:
    """The :class:`ZooListing` of every registered family (registration order)."""
    listed = tuple(FamilyListing.of(family) for family in families().values())
    folders = sorted({str(Path(w["cached_at"]).parent) for f in listed for w in f.weights if w["cached_at"]})
    return ZooListing(listed, ", ".join(folders) or str(cache_dir()))


def _choices(values, default) -> str:
    return " ".join(f"{v}*" if v == default else str(v) for v in values)
