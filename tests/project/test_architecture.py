"""The package's layers hold: no import cycle among edgemobile's modules (imports inside
functions counted, a package's __init__ as a module), and import-linter's layers contract in
pyproject.toml (cli → api → … → leaf utilities) is kept."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import ROOT
sys.path.insert(0, str(ROOT / "tools"))
import import_cycles  # noqa: E402


def test_no_import_cycles():
    assert import_cycles.cycles(import_cycles.import_graph()) == []


def test_cycles_through_function_level_and_package_imports_are_found(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("def __getattr__(name):\n    from pkg import api\n    return api\n")
    (package / "api.py").write_text("from pkg.sub import worker\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "worker.py").write_text("def f():\n    from pkg import __version__\n")
    (package / "leaf.py").write_text("import os\n")
    graph = import_cycles.import_graph(tmp_path, "pkg")
    assert graph["pkg.leaf"] == set()
    assert import_cycles.cycles(graph) == [["pkg", "pkg.api", "pkg.sub.worker"]]


def test_layers_contract_is_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    proc = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 kept, 0 broken" in proc.stdout
