"""How big is the device install? Fresh venv, ``pip install ".[runtime]"`` from this checkout,
then the size of site-packages and of its largest distributions.

    python tools/runtime_install_size.py [--keep DIR] [--json FILE]

Sizes are of the installed files (each distribution's RECORD), in MB (10^6 bytes); pip and
setuptools, which ``python -m venv`` seeds, are listed but left out of the runtime total.
The venv is also checked: TensorFlow must not be importable, ``edgemobile --version`` must run.
Target: runtime total ≤ 200 MB.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEEDED = {"pip", "setuptools", "wheel"}  # what `python -m venv` brings, not the runtime install


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages")) or sorted(venv.glob("Lib/site-packages"))
    if not found:
        raise SystemExit(f"no site-packages under {venv}")
    return found[0]


def distribution_sizes(site: Path) -> dict[str, int]:
    """Bytes per installed distribution, from the files its RECORD lists."""
    sizes: dict[str, int] = {}
    for info in site.glob("*.dist-info"):
        name = info.name.rsplit("-", 1)[0].split("-")[0]
        record = info / "RECORD"
        total = 0
        if record.is_file():
            with record.open(newline="", encoding="utf-8") as fh:
                for row in csv.reader(fh):
                    if not row:
                        continue
                    path = (site / row[0]).resolve()
                    if path.is_file():
                        total += path.stat().st_size
        sizes[name] = sizes.get(name, 0) + total
    return sizes


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="create the venv here and keep it (default: a temp folder, removed)")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    parser.add_argument("--top", type=int, default=10, help="largest distributions to list (default 10)")
    args = parser.parse_args()

    venv = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="edgemobile-runtime-venv-"))
    try:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
        print(f"pip install '.[runtime]' into {venv} …", file=sys.stderr)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"{ROOT}[runtime]"], check=True)
        no_tf = subprocess.run([str(python), "-c", "import tensorflow"], capture_output=True, check=False).returncode != 0
        cli = subprocess.run([str(python), "-m", "edgemobile", "--version"], capture_output=True, text=True, cwd=venv,
                             check=False)
        site = site_packages(venv)
        sizes = distribution_sizes(site)
        total = tree_size(site)
        seeded = sum(size for name, size in sizes.items() if name.lower() in SEEDED)
        runtime = total - seeded
        largest = sorted(((n, s) for n, s in sizes.items() if n.lower() not in SEEDED), key=lambda item: -item[1])
        print(f"site-packages: {total / 1e6:.1f} MB in total; runtime install {runtime / 1e6:.1f} MB "
              f"(without {', '.join(sorted(n for n in sizes if n.lower() in SEEDED))}: {seeded / 1e6:.1f} MB)")
        print(f"TensorFlow importable: {'no' if no_tf else 'YES'}; edgemobile --version: "
              f"{(cli.stdout or cli.stderr).strip() or cli.returncode}")
        print(f"largest {min(args.top, len(largest))} distributions:")
        for name, size in largest[: args.top]:
            print(f"  {size / 1e6:8.1f} MB  {name}")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "site_packages_mb": round(total / 1e6, 1),
                "runtime_mb": round(runtime / 1e6, 1),
                "distributions_mb": {n: round(s / 1e6, 2) for n, s in sorted(sizes.items(), key=lambda i: -i[1])},
                "tensorflow_importable": not no_tf,
                "edgemobile_version": cli.stdout.strip(),
            }, indent=2) + "\n")
        if not no_tf or cli.returncode != 0:
            raise SystemExit("the runtime install is broken (see above)")
    finally:
        if not args.keep:
            shutil.rmtree(venv, ignore_errors=True)


if __name__ == "__main__":
    main()
