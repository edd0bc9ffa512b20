"""Calibration sets: manifests, the download cache (against a loopback HTTP server serving
../shared/imagenet/calib), trust-on-first-use, the shipped manifest and the builder."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from edgemobile import download
from edgemobile.data import calibration_builder, calibration_download, calibration_manifest, calibration_sets
from edgemobile.data.datasets import find_images
from edgemobile.data.labels import imagenet_classes
from edgemobile.errors import EdgeMobileError

from support.paths import ROOT
PINNED_COMMIT = "22d0a5c9c5c76d13532da2d29ea7fa2e9e034387"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message
    return message


def load_script():
    spec = importlib.util.spec_from_file_location("build_manifest_script", ROOT / "calibration" / "build_manifest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """A cache per test (conftest's KERAS_HOME is shared by the whole session)."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path / "keras_home"


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("EDGEMOBILE_OFFLINE", raising=False)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")


@pytest.fixture
def calib(shared) -> Path:
    path = shared / "imagenet" / "calib"
    if not path.is_dir():
        pytest.skip(f"{path} not found")
    return path


class Server:
    """Serves a folder on 127.0.0.1; counts requests; ``overrides`` replaces a file's bytes."""

    def __init__(self, root: Path):
        self.root = root
        self.requests: Counter[str] = Counter()
        self.overrides: dict[str, bytes] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                name = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                server.requests[name] += 1
                body = server.overrides.get(name)
                if body is None:
                    path = server.root / name
                    if "/" in name or not path.is_file():
                        self.send_error(404)
                        return
                    body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(calib, online):
    srv = Server(calib)
    yield srv
    srv.close()


def subset_manifest(calib: Path, n: int = 30, name: str = "subset") -> dict:
    """A manifest built from the shared copies (their real sha256), ``n`` files spread over the
    classes, always including a name that needs URL quoting."""
    data = calibration_builder.build_manifest(calib, per_class=1, name=name, quiet=True)
    files = data["files"]
    picked = files[:: max(1, len(files) // n)][: n - 1]
    picked += [f for f in files if f["path"] == "n02966687_carpenter's_kit.JPEG" and f not in picked]
    data["files"] = picked
    data["root"] = None  # a hosted set: found only through base_url(_override)
    data["base_url"] = "https://example.invalid/never-used/"
    return data


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".part")


# --------------------------------------------------------------------------- downloads


def test_downloads_once_then_served_from_cache(calib, server, monkeypatch):
    data = subset_manifest(calib)
    folder = calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    names = [f["path"] for f in data["files"]]
    assert sorted(p.name for p in find_images(folder)) == sorted(names)
    assert server.requests == Counter({name: 1 for name in names})
    for entry in data["files"]:
        assert sha256(folder / entry["path"]) == entry["sha256"] == sha256(calib / entry["path"])
    assert leftovers(folder) == []
    assert calibration_download.materialize(data, base_url_override=server.url, quiet=True) == folder
    assert server.total == len(names)  # second call: no request at all
    monkeypatch.setenv("EDGEMOBILE_OFFLINE", "1")  # and a complete cache works offline
    assert calibration_download.materialize(data, base_url_override=server.url) == folder
    assert server.total == len(names)


def test_interrupted_download_resumes(calib, server):
    data = subset_manifest(calib, n=12)
    folder = calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    for entry in data["files"][:3]:
        (folder / entry["path"]).unlink()
    before = server.total
    calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    assert server.total - before == 3


def test_corrupted_download_is_rejected_and_not_kept(calib, server):
    data = subset_manifest(calib, n=10)
    bad = data["files"][4]["path"]
    server.overrides[bad] = (calib / bad).read_bytes()[:-100] + b"x" * 100
    with pytest.raises(EdgeMobileError) as exc:
        calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    message = one_line(exc)
    assert bad in message and "checksum" in message
    folder = download.cache_dir(f"{calibration_download.CACHE_SUBDIR}/subset")
    assert not (folder / bad).exists()
    assert leftovers(folder) == []


def test_modified_cached_file_is_downloaded_again_or_reported_offline(calib, server, monkeypatch, capsys):
    data = subset_manifest(calib, n=5)
    folder = calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    victim = folder / data["files"][2]["path"]
    victim.write_bytes(b"tampered")
    calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    assert sha256(victim) == data["files"][2]["sha256"]
    assert "downloading it again" in capsys.readouterr().err
    victim.write_bytes(b"tampered")
    monkeypatch.setenv("EDGEMOBILE_OFFLINE", "1")
    with pytest.raises(EdgeMobileError) as exc:
        calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    assert str(victim) in one_line(exc)


def test_offline_or_server_down_gives_one_line_error(calib, monkeypatch):
    data = subset_manifest(calib, n=3)
    with pytest.raises(EdgeMobileError) as exc:  # conftest sets EDGEMOBILE_OFFLINE=1
        calibration_download.materialize(data, base_url_override="http://127.0.0.1:9/", quiet=True)
    message = one_line(exc)
    assert "EDGEMOBILE_OFFLINE=1" in message and "--calibration DIR" in message

    monkeypatch.delenv("EDGEMOBILE_OFFLINE")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    down = Server(calib)
    url = down.url
    down.close()
    with pytest.raises(EdgeMobileError) as exc:
        calibration_download.materialize(data, base_url_override=url, quiet=True)
    message = one_line(exc)
    assert url in message and "put the file at" in message
    assert leftovers(download.cache_dir(calibration_download.CACHE_SUBDIR)) == []


def test_default_set_offline_says_what_to_download_and_where():
    with pytest.raises(EdgeMobileError) as exc:
        calibration_sets.default_calibration_folder()
    message = one_line(exc)
    assert f"raw.githubusercontent.com/EliSchwartz/imagenet-sample-images/{PINNED_COMMIT}/" in message
    assert str(download.cache_dir(f"{calibration_download.CACHE_SUBDIR}/imagenet_sample_1000")) in message
    assert "--calibration DIR" in message
    with pytest.raises(EdgeMobileError):
        calibration_sets.resolve_calibration(None)


# --------------------------------------------------------------------------- trust on first use


def test_null_checksums_are_trusted_on_first_use_then_checked(calib, server, monkeypatch, capsys):
    data = subset_manifest(calib, n=8, name="tofu")
    for entry in data["files"][:5]:
        entry["sha256"] = entry["size"] = None
    folder = calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    assert "accepted 5 of 8 images on first use" in capsys.readouterr().err
    records = json.loads((folder / calibration_download.TOFU_FILE).read_text())["files"]
    assert sorted(records) == sorted(e["path"] for e in data["files"][:5])
    for path, record in records.items():
        assert record["sha256"] == sha256(calib / path)

    calibration_download.materialize(data, base_url_override=server.url, quiet=True)  # later run: silent, no requests
    assert "first use" not in capsys.readouterr().err and server.total == 8

    victim = folder / data["files"][1]["path"]
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    monkeypatch.setenv("EDGEMOBILE_OFFLINE", "1")
    with pytest.raises(EdgeMobileError) as exc:
        calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    message = one_line(exc)
    assert str(victim) in message and "first use" in message
    monkeypatch.delenv("EDGEMOBILE_OFFLINE")
    calibration_download.materialize(data, base_url_override=server.url, quiet=True)  # online: fetched again, checked
    assert sha256(victim) == records[victim.name]["sha256"]

    # the server now serves other bytes for an accepted file: caught against the record
    gone = folder / data["files"][3]["path"]
    gone.unlink()
    server.overrides[gone.name] = (calib / data["files"][4]["path"]).read_bytes()
    with pytest.raises(EdgeMobileError) as exc:
        calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    assert gone.name in one_line(exc) and not gone.exists()


def test_files_placed_in_the_cache_by_hand_work_offline(calib, capsys):
    data = subset_manifest(calib, n=6, name="byhand")
    for entry in data["files"][:2]:
        entry["sha256"] = entry["size"] = None
    folder = download.cache_dir(f"{calibration_download.CACHE_SUBDIR}/byhand")
    folder.mkdir(parents=True)
    for entry in data["files"]:
        (folder / entry["path"]).write_bytes((calib / entry["path"]).read_bytes())
    assert calibration_download.materialize(data, quiet=True) == folder  # EDGEMOBILE_OFFLINE=1: nothing to download
    assert "accepted 2 of 6 images on first use" in capsys.readouterr().err


def test_first_use_rejects_a_file_that_is_not_an_image(calib, server):
    data = subset_manifest(calib, n=4, name="notimage")
    bad = data["files"][0]
    bad["sha256"] = bad["size"] = None
    server.overrides[bad["path"]] = b"<html>rate limited</html>"
    with pytest.raises(EdgeMobileError) as exc:
        calibration_download.materialize(data, base_url_override=server.url, quiet=True)
    assert bad["path"] in one_line(exc) and "does not decode" in str(exc.value)
    folder = download.cache_dir(f"{calibration_download.CACHE_SUBDIR}/notimage")
    assert not (folder / bad["path"]).exists() and leftovers(folder) == []


def test_fill_checksums_from_url(calib, server, tmp_path):
    data = subset_manifest(calib, n=6, name="fill")
    truth = {e["path"]: (e["sha256"], e["size"]) for e in data["files"]}
    for entry in data["files"][:4]:
        entry["sha256"] = entry["size"] = None
    manifest = tmp_path / "m.json"
    manifest.write_text(calibration_manifest.dump_manifest(data))
    script = load_script()
    assert script.main(["--fill-checksums-from-url", str(manifest), "--base-url", server.url]) == 0
    filled = calibration_manifest.load_manifest(manifest)
    assert filled.pinned == 6
    assert {e.path: (e.sha256, e.size) for e in filled.files} == truth


# --------------------------------------------------------------------------- the shipped manifest


def test_shipped_manifest_copies_are_identical():
    canonical = ROOT / "edgemobile" / "resources" / calibration_manifest.SHIPPED_MANIFEST
    assert canonical.read_bytes() == (ROOT / "calibration" / calibration_manifest.SHIPPED_MANIFEST).read_bytes()
    assert calibration_manifest.dump_manifest(calibration_manifest.load_manifest(canonical)) == canonical.read_text()


def test_shipped_manifest_is_valid_and_matches_the_sample(calib):
    manifest = calibration_manifest.shipped_manifest()
    assert manifest.name == "imagenet_sample_1000"
    assert manifest.base_url == f"https://raw.githubusercontent.com/EliSchwartz/imagenet-sample-images/{PINNED_COMMIT}/"
    assert len(manifest.files) == 1000
    assert [e.cls for e in manifest.files] == list(imagenet_classes().ids)
    assert all(e.path.startswith(f"{e.cls}_") and e.path.endswith(".JPEG") for e in manifest.files)
    assert [e.path for e in manifest.files] == sorted(os.listdir(calib))
    pinned = [e for e in manifest.files if e.sha256]
    assert len(pinned) == manifest.pinned == 175
    for entry in manifest.files:
        path = calib / entry.path
        if entry.sha256:  # unmodified in the shared copy: its checksum is the original's
            assert (entry.sha256, entry.size) == (sha256(path), path.stat().st_size)
        else:  # downscaled to a shorter side of 320 px: checksum unknown here
            assert entry.size is None
            with Image.open(path) as image:
                assert min(image.size) == 320


def test_shipped_manifest_regenerates_identically(calib, tmp_path, monkeypatch):
    script = load_script()
    monkeypatch.setattr(script, "CANONICAL", tmp_path / "a.json")
    monkeypatch.setattr(script, "CHECKOUT_COPY", tmp_path / "b.json")
    assert script.main(["--regenerate-shipped-from", str(calib)]) == 0
    assert (tmp_path / "a.json").read_bytes() == (ROOT / "calibration" / calibration_manifest.SHIPPED_MANIFEST).read_bytes()
    assert (tmp_path / "b.json").read_bytes() == (tmp_path / "a.json").read_bytes()


def test_full_default_set_over_http(calib, server, capsys):
    """All 1000 files of the shipped manifest from the loopback copy: the 175 pinned ones are
    verified against their published checksums, the 825 others accepted on first use."""
    folder = calibration_sets.default_calibration_folder(base_url_override=server.url, quiet=True)
    assert server.total == 1000 and len(find_images(folder)) == 1000
    assert "accepted 825 of 1000 images on first use" in capsys.readouterr().err
    assert calibration_sets.default_calibration_folder(base_url_override=server.url, quiet=True) == folder
    assert server.total == 1000


def test_shipped_manifest_with_local_root(calib):
    view = calibration_download.materialize(calibration_manifest.shipped_manifest(), local_root=calib, quiet=True)
    images = find_images(view)
    assert len(images) == 1000 and all(p.is_symlink() for p in images)


# --------------------------------------------------------------------------- the builder


def make_train_folder(root: Path, classes=("n01440764", "n01443537", "n01484850", "n01491361", "n01494475"),
                      per_class: int = 5) -> Path:
    for c, synset in enumerate(classes):
        folder = root / synset
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (24, 16), (c * 40, i * 50, 99)).save(folder / f"{synset}_{i}.JPEG", quality=80)
    extra = root / "n01496331"
    extra.mkdir()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(extra / "n01496331_0.JPEG")
    return root


def test_builder_is_reproducible_and_seed_dependent(tmp_path):
    train = make_train_folder(tmp_path / "train")
    a = calibration_builder.build_manifest(train, per_class=2, seed=0, quiet=True)
    b = calibration_builder.build_manifest(train, per_class=2, seed=0, quiet=True)
    c = calibration_builder.build_manifest(train, per_class=2, seed=1, quiet=True)
    assert a == b
    assert [f["path"] for f in a["files"]] != [f["path"] for f in c["files"]]
    counts = Counter(f["class"] for f in a["files"])
    assert counts == {"n01440764": 2, "n01443537": 2, "n01484850": 2, "n01491361": 2, "n01494475": 2, "n01496331": 1}
    assert a["root"] == str(train.resolve()) and a["base_url"] is None
    assert a["selection"] == {"per_class": 2, "seed": 0, "classes": 6, "classes_with_fewer": 1}
    for entry in a["files"]:
        path = train / entry["path"]
        assert entry["path"].startswith(entry["class"] + "/")
        assert (entry["sha256"], entry["size"]) == (sha256(path), path.stat().st_size)
    calibration_manifest.validate_manifest(a)


def test_builder_cli_writes_atomically_and_refuses_overwrite(tmp_path):
    train = make_train_folder(tmp_path / "train")
    out = tmp_path / "m.json"
    cmd = [sys.executable, str(ROOT / "calibration" / "build_manifest.py"), str(train),
           "--per-class", "2", "--seed", "3", "-o", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    first = out.read_text()
    assert calibration_manifest.load_manifest(out).to_dict()["selection"]["seed"] == 3
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.strip().count("\n") == 0 and "--force" in run.stderr
    assert out.read_text() == first
    run = subprocess.run([sys.executable, "-m", "edgemobile.cli.calibration", "build", *cmd[2:], "--force"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert out.read_text() == first
    assert leftovers(tmp_path) == []


def test_local_manifest_is_verified_in_place_and_exposes_only_its_files(tmp_path):
    train = make_train_folder(tmp_path / "train")
    manifest = tmp_path / "m.json"
    data = calibration_builder.build_manifest(train, per_class=2, seed=0, quiet=True)
    manifest.write_text(calibration_manifest.dump_manifest(data))
    view = calibration_sets.resolve_calibration(str(manifest))
    images = find_images(view)
    assert sorted(p.relative_to(view).as_posix() for p in images) == sorted(f["path"] for f in data["files"])
    assert all(p.is_symlink() and p.resolve().is_relative_to(train.resolve()) for p in images)
    assert len(find_images(train)) == 26  # nothing was copied into or removed from the train folder

    victim = train / data["files"][0]["path"]
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(EdgeMobileError) as exc:
        calibration_sets.resolve_calibration(manifest)
    assert str(victim) in one_line(exc)
    victim.unlink()
    with pytest.raises(EdgeMobileError) as exc:
        calibration_sets.resolve_calibration(manifest)
    assert "missing" in one_line(exc)


def test_resolve_calibration_arguments(tmp_path):
    assert calibration_sets.resolve_calibration(str(tmp_path)) == tmp_path
    with pytest.raises(EdgeMobileError) as exc:
        calibration_sets.resolve_calibration(tmp_path / "nope")
    assert "no such" in one_line(exc)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(EdgeMobileError) as exc:
        calibration_sets.resolve_calibration(tmp_path / "notes.txt")
    assert ".json" in one_line(exc)
    with pytest.raises(EdgeMobileError) as exc:
        calibration_sets.resolve_calibration(tmp_path / "missing.json")
    assert "no such calibration manifest" in one_line(exc)


# --------------------------------------------------------------------------- bad manifests

GOOD_SHA = "a" * 64


def manifest_with(**changes) -> dict:
    data = {"format": calibration_manifest.FORMAT, "version": 1, "name": "t", "description": "", "source": "",
            "base_url": None, "files": [{"path": "a/x.JPEG", "sha256": GOOD_SHA, "size": 3, "class": "n1"}]}
    data.update(changes)
    return data


def entry(**changes) -> dict:
    return {"path": "x.JPEG", "sha256": GOOD_SHA, "size": 1, **changes}


@pytest.mark.parametrize("content, expected", [
    ("{not json", "not a JSON"),
    ("[]", "expected a JSON object"),
    (manifest_with(format="something-else"), "'something-else'"),
    (manifest_with(version=2), "version 2"),
    ({k: v for k, v in manifest_with().items() if k != "files"}, "missing field 'files'"),
    ({k: v for k, v in manifest_with().items() if k != "name"}, "missing field 'name'"),
    (manifest_with(name="../evil"), "\"name\""),
    (manifest_with(files=[]), "empty"),
    (manifest_with(files=[entry(sha256="abc")]), "64 hex digits"),
    (manifest_with(files=[{"path": "x.JPEG"}]), "missing field 'sha256'"),
    (manifest_with(files=[entry(), entry()]), "duplicate path 'x.JPEG'"),
    (manifest_with(files=[entry(path="/etc/passwd")]), "must be relative"),
    (manifest_with(files=[entry(path="../x.JPEG")]), "must be relative"),
    (manifest_with(files=[entry(path="a\\x.JPEG")]), "must be relative"),
    (manifest_with(files=[entry(size=-1)]), "\"size\""),
    (manifest_with(base_url="ftp://example.com/"), "base_url"),
])
def test_bad_manifests_are_rejected_with_one_line_errors(tmp_path, content, expected):
    path = tmp_path / "bad.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(EdgeMobileError) as exc:
        calibration_manifest.load_manifest(path)
    message = one_line(exc)
    assert message.startswith(f"{path}: ") and expected in message


def test_materialize_without_a_source_is_an_error(tmp_path):
    data = manifest_with(root=str(tmp_path / "gone"))
    with pytest.raises(EdgeMobileError) as exc:
        calibration_download.materialize(data)
    assert "does not exist" in one_line(exc)


def test_two_processes_filling_the_same_set_at_once(calib, server, tmp_path):
    """Both succeed, every file is downloaded once, and the trust-on-first-use record (half the
    entries have no published sha256) holds every image."""
    data = subset_manifest(calib, n=16, name="concurrent")
    for entry in data["files"][::2]:
        entry["sha256"] = entry["size"] = None
    manifest = tmp_path / "m.json"
    manifest.write_text(calibration_manifest.dump_manifest(data))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "edgemobile.cli.calibration", "fetch", str(manifest), "--base-url", server.url]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    folder = download.cache_dir(f"{calibration_download.CACHE_SUBDIR}/concurrent")
    assert {out.strip().splitlines()[-1] for out, _ in outs} == {str(folder)}
    assert server.requests == Counter({f["path"]: 1 for f in data["files"]})
    for entry in data["files"]:
        assert sha256(folder / entry["path"]) == sha256(calib / entry["path"])
    tofu = json.loads((folder / calibration_download.TOFU_FILE).read_text())["files"]
    assert sorted(tofu) == sorted(f["path"] for f in data["files"][::2])
    assert leftovers(folder) == []
