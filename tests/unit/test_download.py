"""Weights downloads: Keras-style cache, checksums, offline behaviour — against a loopback
HTTP server, never the internet."""

import hashlib
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgemobile.download import cache_dir, fetch
from edgemobile.errors import EdgeMobileError
from edgemobile.networks import mobilenet_v1
from edgemobile.networks.zoo import resolve
from support.paths import ROOT

PAYLOAD = b"pretend these are weights\n" * 1000


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    (root / "mobilenet_2_5_128_tf.h5").write_bytes(PAYLOAD)
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", requests
    httpd.shutdown()


@pytest.fixture
def online(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGEMOBILE_OFFLINE", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))


def test_cache_follows_keras_home(online, tmp_path):
    assert cache_dir() == tmp_path / "keras" / "models"


def test_zoo_weights_download_once_then_cached(online, server, monkeypatch, capsys):
    url, requests = server
    monkeypatch.setattr(mobilenet_v1, "KERAS_WEIGHTS_URL", url)
    variant = resolve("mobilenet", 0.25, 128)
    path = variant.weights_path("imagenet")
    assert path == cache_dir() / "mobilenet_2_5_128_tf.h5" and path.read_bytes() == PAYLOAD
    assert hashlib.sha256(PAYLOAD).hexdigest() in capsys.readouterr().err  # no published checksum: show it
    assert variant.weights_path("imagenet") == path
    assert len(requests) == 1
    monkeypatch.setenv("EDGEMOBILE_OFFLINE", "1")
    assert variant.weights_path("imagenet") == path  # a cached file works offline


def test_checksum_mismatch_keeps_nothing(online, server):
    url, _ = server
    with pytest.raises(EdgeMobileError, match="has checksum .* expected 0{64}.*nothing was kept"):
        fetch(url + "mobilenet_2_5_128_tf.h5", "w.h5", checksum="0" * 64, what="weights")
    assert not cache_dir().exists() or list(cache_dir().iterdir()) == []


def test_matching_checksums_md5_and_sha256(online, server):
    url, requests = server
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    path = fetch(url + "mobilenet_2_5_128_tf.h5", "a.h5", checksum=md5)
    assert path.read_bytes() == PAYLOAD
    # A corrupted cached file is noticed and downloaded again.
    path.write_bytes(b"corrupted")
    assert fetch(url + "mobilenet_2_5_128_tf.h5", "a.h5", checksum=hashlib.sha256(PAYLOAD).hexdigest()).read_bytes() == PAYLOAD
    assert len(requests) == 2


def test_unreachable_server_names_file_and_cache_location(online):
    with pytest.raises(EdgeMobileError) as info:
        fetch("http://127.0.0.1:9/nothing.h5", "nothing.h5", what="weights", hint="or pass --weights FILE")
    message = str(info.value)
    assert "nothing.h5" in message and str(cache_dir() / "nothing.h5") in message and "--weights FILE" in message
    assert "\n" not in message


def test_offline_flag_never_touches_network(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "k"))
    monkeypatch.setenv("EDGEMOBILE_OFFLINE", "1")
    with pytest.raises(EdgeMobileError, match="EDGEMOBILE_OFFLINE=1"):
        fetch("http://127.0.0.1:9/x.h5", "x.h5")
    assert not Path(os.environ["KERAS_HOME"]).exists()


def test_weights_none_and_local_file(tmp_path):
    variant = resolve("mobilenet_v1")
    assert variant.weights_path("none") is None and variant.weights_path(None) is None
    local = tmp_path / "mine.h5"
    local.write_bytes(b"x")
    assert variant.weights_path(local) == local
    with pytest.raises(EdgeMobileError, match="weights file not found"):
        variant.weights_path(tmp_path / "missing.h5")


# -- concurrency and faults -------------------------------------------------------------------
BIG = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def slow_server():
    """Serves BIG at /big.bin in 64 KiB pieces, ``delay`` seconds apart; counts requests."""
    state = {"delay": 0.05, "requests": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            state["requests"] += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(BIG)))
            self.end_headers()
            try:
                for start in range(0, len(BIG), 1 << 16):
                    self.wfile.write(BIG[start:start + (1 << 16)])
                    self.wfile.flush()
                    time.sleep(state["delay"])
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/big.bin", state
    httpd.shutdown()
    httpd.server_close()


def _fetch_process(url: str, checksum: str | None) -> subprocess.Popen:
    code = ("import sys; from edgemobile.download import fetch; from edgemobile.cli.main import main\n"
            "from edgemobile.errors import EdgeMobileError\n"
            f"try: print(fetch({url!r}, 'big.bin', checksum={checksum!r}, quiet=True))\n"
            "except EdgeMobileError as e: print('edgemobile: error:', e, file=sys.stderr); sys.exit(2)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _cache_entries() -> list[str]:
    return sorted(p.name for p in cache_dir().iterdir())


@pytest.mark.parametrize("checksum", [hashlib.sha256(BIG).hexdigest(), None])
def test_two_processes_downloading_at_once_share_one_copy(online, slow_server, checksum):
    url, state = slow_server
    procs = [_fetch_process(url, checksum) for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert {out.strip() for out, _ in results} == {str(cache_dir() / "big.bin")}
    assert (cache_dir() / "big.bin").read_bytes() == BIG
    assert state["requests"] == 1  # the second process waited for the first one's copy
    # No lock or temp file is left; the sha256 is recorded (it marks the file as downloaded here).
    assert _cache_entries() == [".big.bin.sha256", "big.bin"]


def test_killed_download_leaves_nothing_trusted(online, slow_server):
    url, state = slow_server
    state["delay"] = 0.5
    proc = _fetch_process(url, None)
    deadline = time.monotonic() + 60
    while not (cache_dir().is_dir() and list(cache_dir().glob(".big.bin.*.part"))):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    time.sleep(0.3)
    proc.kill()
    proc.wait()
    assert not (cache_dir() / "big.bin").exists()
    assert [name for name in _cache_entries() if name.endswith(".part")]  # only an untrusted temp file
    state["delay"] = 0
    path = fetch(url, "big.bin", quiet=True)
    assert path.read_bytes() == BIG
    assert _cache_entries() == [".big.bin.sha256", "big.bin"]  # the stale temp file is gone


def test_cached_file_changed_after_download_is_caught(online, server, monkeypatch, capsys):
    """Keras publishes no checksum for MobileNetV1 weights: the sha256 recorded at download
    catches a later change."""
    url, requests = server
    path = fetch(url + "mobilenet_2_5_128_tf.h5", "w.h5")
    assert fetch(url + "mobilenet_2_5_128_tf.h5", "w.h5") == path and len(requests) == 1
    path.write_bytes(PAYLOAD[:-1] + b"!")
    capsys.readouterr()
    assert fetch(url + "mobilenet_2_5_128_tf.h5", "w.h5").read_bytes() == PAYLOAD
    assert "does not match the sha256 recorded at download; downloading it again" in capsys.readouterr().err
    assert len(requests) == 2
    path.write_bytes(b"changed again")
    monkeypatch.setenv("EDGEMOBILE_OFFLINE", "1")
    with pytest.raises(EdgeMobileError) as info:
        fetch(url + "mobilenet_2_5_128_tf.h5", "w.h5", what="weights")
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "changed on disk" in message


def test_hand_placed_file_that_is_not_the_published_one_is_refused_not_replaced(online, server, monkeypatch):
    """Issue 27: a weights file put where the offline error said, but not byte-identical to the
    published one, was "downloading it again" and then "put the file at <the same path>"."""
    url, requests = server
    published = hashlib.sha256(PAYLOAD).hexdigest()
    mine = cache_dir() / "w.h5"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own re-serialized weights")
    for offline in ("0", "1"):
        monkeypatch.setenv("EDGEMOBILE_OFFLINE", offline)
        with pytest.raises(EdgeMobileError) as info:
            fetch(url + "mobilenet_2_5_128_tf.h5", "w.h5", checksum=published, what="weights",
                  hint="or pass --weights FILE", by_path="--weights FILE")
        assert str(info.value) == (f"{mine}: not the published weights (it does not match its published "
                                   "checksum); load your own file by path (--weights FILE) or delete it to "
                                   "download the official file")
    assert mine.read_bytes() == b"my own re-serialized weights" and requests == []
    monkeypatch.delenv("EDGEMOBILE_OFFLINE")
    mine.unlink()
    assert fetch(url + "mobilenet_2_5_128_tf.h5", "w.h5", checksum=published).read_bytes() == PAYLOAD

