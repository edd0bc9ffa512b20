"""Regenerate edgemobile/resources/imagenet_classes.txt (maintenance script).

The 1000 ImageNet-1k classes in the standard order (sorted synsets; index 0 = n01440764),
one ``synset<TAB>name, name, …`` per line. Source: the synset and lemma lists that the
``timm`` wheel publishes (Apache-2.0), so no file from ../shared is copied into the project.

    pip download --no-deps -d /tmp/timm timm
    python tools/make_class_names.py /tmp/timm/timm-*.whl
"""

import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "edgemobile" / "resources" / "imagenet_classes.txt"


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as whl:
        synsets = whl.read("timm/data/_info/imagenet_synsets.txt").decode().split()
        lemmas = dict(
            line.split("\t", 1)
            for line in whl.read("timm/data/_info/imagenet_synset_to_lemma.txt").decode().splitlines()
            if "\t" in line
        )
    if len(synsets) != 1000 or synsets != sorted(synsets):
        raise SystemExit(f"{wheel}: expected 1000 sorted synsets, got {len(synsets)}")
    OUT.write_text("".join(f"{s}\t{lemmas[s].strip()}\n" for s in synsets), encoding="utf-8")
    print(f"wrote {OUT} ({len(synsets)} classes)")


if __name__ == "__main__":
    main(sys.argv[1])
