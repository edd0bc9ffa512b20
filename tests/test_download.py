"""Weights downloads: Keras-style cache, checksums, offline behaviour — against a loopback
HTTP server, never the internet."""

import hashlib
import http.server
import os
import threading
from pathlib import Path

import pytest

from edgemobile.download import cache_dir, fetch
from edgemobile.errors import EdgeMobileError
from edgemobile.models import mobilenet_v1
from edgemobile.models.zoo import resolve

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
