"""Class lists: the 1000 ImageNet classes shipped with the package, and user label files."""

from __future__ import annotations

import dataclasses
import functools
import os
from importlib import resources
from pathlib import Path

from edgemobile.errors import EdgeMobileError


@dataclasses.dataclass(frozen=True)
class ClassList:
    """Ordered classes of a model's output: ``names[i]`` is output ``i``.

    ``ids`` are stable identifiers (ImageNet synsets such as ``n01440764``) when known, used
    to match dataset folders; ``names`` are what people read.
    """

    ids: tuple[str, ...]
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    @functools.cached_property
    def _lookup(self) -> dict[str, int]:
        table = {name: i for i, name in enumerate(self.names)}
        table.update({cid: i for i, cid in enumerate(self.ids)})
        return table

    @functools.cached_property
    def _loose_lookup(self) -> dict[str, int]:
        table = {label_key(name): i for i, name in enumerate(self.names)}
        table.update({label_key(self.short_name(i)): i for i in range(len(self)) if label_key(self.short_name(i))
                      not in table})
        table.update({label_key(cid): i for i, cid in enumerate(self.ids)})
        return table

    def index_of(self, key: str) -> int | None:
        """The output index of a class id or name; names also match case- and
        whitespace-insensitively (folder ``Daisy`` or ``sun flower`` → label ``daisy``,
        ``sunflower``)."""
        found = self._lookup.get(key)
        return found if found is not None else self._loose_lookup.get(label_key(key))

    @classmethod
    def from_names(cls, names) -> "ClassList":
        """Classes known by name only (a user model's labels): the names are the ids."""
        names = tuple(str(n) for n in names)
        return cls(ids=names, names=names)

    def short_name(self, index: int) -> str:
        """First synonym only for a synset's name list (``great white shark`` rather than the
        whole WordNet line); a user's own label (no synset id) is kept whole, commas included."""
        name = self.names[index]
        return name.split(",")[0].strip() if self.ids[index] != name else name

    def label_lines(self) -> list[str]:
        """``labels.txt`` lines as Android/MediaPipe read them: one readable name per class."""
        return [self.short_name(i) for i in range(len(self))]


def label_key(text: str) -> str:
    """How class names are compared: case-insensitive, whitespace ignored."""
    return "".join(str(text).split()).casefold()


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> ClassList:
    """The 1000 ImageNet-1k classes in the standard (sorted synset) order."""
    text = resources.files("edgemobile.resources").joinpath("imagenet_classes.txt").read_text("utf-8")
    rows = [line.split("\t", 1) for line in text.splitlines() if line]
    return ClassList(ids=tuple(r[0] for r in rows), names=tuple(r[1] for r in rows))


def read_label_file(path: str | os.PathLike, expected: int | None = None) -> ClassList:
    """A user label file: one class per line (``synset name`` or just ``name``)."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except FileNotFoundError:
        raise EdgeMobileError(f"{path}: label file not found") from None
    except (UnicodeDecodeError, IsADirectoryError):
        raise EdgeMobileError(f"{path}: not a text label file (one class name per line)") from None
    lines = [line for line in lines if line]
    if not lines:
        raise EdgeMobileError(f"{path}: label file is empty")
    if expected is not None and len(lines) != expected:
        raise EdgeMobileError(f"{path}: has {len(lines)} labels but the model has {expected} outputs")
    ids, names = [], []
    for line in lines:
        head, _, rest = line.partition(" ")
        if rest and head[:1] == "n" and head[1:].isdigit():
            ids.append(head)
            names.append(rest.strip())
        else:
            ids.append(line)
            names.append(line)
    return ClassList(ids=tuple(ids), names=tuple(names))
