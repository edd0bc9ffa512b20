"""The typed errors callers tell apart (a bad image, a bad model file, a download failure):
each is raised for its case, is an EdgeMobileError (so the CLI still prints one line), and
keeps its message."""

from __future__ import annotations

import pytest

from edgemobile.errors import BadImageError, BadModelFileError, DownloadError, EdgeMobileError, MissingInstallError


@pytest.mark.parametrize("kind", [BadImageError, BadModelFileError, DownloadError, MissingInstallError])
def test_typed_errors_are_edgemobile_errors(kind):
    assert issubclass(kind, EdgeMobileError)


def test_bad_image(tmp_path):
    from edgemobile.eval import evaluate

    bad = tmp_path / "broken.JPEG"
    bad.write_bytes(b"not an image")
    with pytest.raises(BadImageError, match="broken.JPEG"):
        evaluate.decode_or_skip(bad, None, 0)
    skipped: list = []
    assert evaluate.decode_or_skip(bad, skipped, 3) is None and skipped[0][0] == 3
    assert evaluate.BadImageError is BadImageError  # still importable where it is raised


def test_bad_tflite_file(tmp_path):
    from edgemobile.tflite.model import check_flatbuffer, read_tflite
    from edgemobile.metadata.reader import read_metadata

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer")
    with pytest.raises(BadModelFileError, match=r"junk.tflite: not a TFLite model \(no TFL3"):
        read_tflite(junk)
    with pytest.raises(BadModelFileError, match="not a TFLite model"):
        read_metadata(junk)
    with pytest.raises(BadModelFileError, match="m.tflite: not a valid TFLite model"):
        check_flatbuffer(b"\x00\x00\x00\x00TFL3" + b"\xff" * 8, "m.tflite")


def test_interpreter_refusing_a_model(monkeypatch):
    from edgemobile.runtime import interpreter

    class Refusing:
        def __init__(self, **kwargs):
            raise ValueError("Model provided has model identifier 'xxxx', should be 'TFL3'\nmore")

    monkeypatch.setattr(interpreter, "check_flatbuffer", lambda data, source: None)
    monkeypatch.setattr(interpreter, "interpreter_backend", lambda: ("fake", Refusing))
    with pytest.raises(BadModelFileError, match=r"m.tflite: cannot be loaded as a TFLite model \(Model provided"):
        interpreter.open_interpreter(b"data", "m.tflite")


def test_bad_keras_model_file(tmp_path):
    pytest.importorskip("keras")
    from edgemobile.networks.user import load_keras_model

    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(BadModelFileError, match="junk.keras: not a loadable Keras model"):
        load_keras_model(junk)
    with pytest.raises(EdgeMobileError, match="no such Keras model file") as missing:
        load_keras_model(tmp_path / "missing.keras")
    assert not isinstance(missing.value, BadModelFileError)  # missing is not malformed


def test_download_failure(tmp_path, monkeypatch):
    from edgemobile.download import fetch

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("EDGEMOBILE_OFFLINE", "1")
    with pytest.raises(DownloadError, match="cannot download .*w.h5"):
        fetch("http://127.0.0.1:9/w.h5", "w.h5", subdir="models", what="test weights", quiet=True)
    monkeypatch.setenv("EDGEMOBILE_OFFLINE", "0")
    with pytest.raises(DownloadError, match="w.h5"):
        fetch("http://127.0.0.1:9/w.h5", "w.h5", subdir="models", what="test weights", quiet=True, timeout=5)


def test_cli_prints_a_typed_error_as_one_line(tmp_path, capsys):
    from edgemobile.cli.main import main

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"this is not a flatbuffer")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", str(junk), str(image)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"edgemobile: error: {junk}: not a TFLite model (no TFL3 flatbuffer identifier)"]
