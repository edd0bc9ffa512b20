"""The torch-free checkpoint readers: PyTorch zip and legacy pickles, safetensors, format
detection — and refusal of pickles that try to run code.

Checkpoints are written by the small writers below, which emit the same structure
``torch.save`` does (pickle protocol 2: ``collections.OrderedDict`` of
``torch._utils._rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())``,
storages as raw little-endian bytes), so no torch is needed.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgemobile.errors import EdgeMobileError
from edgemobile.networks import checkpoints
from edgemobile.networks.checkpoints import (
    detect_format,
    read_safetensors,
    read_state_dict,
)
from support.random_weights import randomize_batchnorm

# -- writers ----------------------------------------------------------------------------------

_STORAGE_NAMES = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


@dataclasses.dataclass
class Strided:
    """A tensor view: ``storage`` (1-D array) seen with offset/size/stride, as torch stores it."""

    storage: np.ndarray
    offset: int
    size: tuple
    stride: tuple
    key: str | None = None  # share a storage between tensors by giving the same key


def _g(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


class PickleWriter:
    """Protocol-2 pickle of dicts/lists/tuples/scalars/tensors in torch.save's layout."""

    def __init__(self, legacy: bool = False) -> None:
        self.out = bytearray(b"\x80\x02")
        self.storages: dict[str, tuple[str, np.ndarray]] = {}
        self.legacy = legacy

    def dump(self, obj) -> bytes:
        self.save(obj)
        self.out += b"."
        return bytes(self.out)

    def save(self, obj) -> None:
        out = self.out
        if obj is None:
            out += b"N"
        elif obj is True or obj is False:
            out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            out += b"J" + struct.pack("<i", obj)
        elif isinstance(obj, float):
            out += b"G" + struct.pack(">d", obj)
        elif isinstance(obj, str):
            data = obj.encode()
            out += b"X" + struct.pack("<I", len(data)) + data
        elif isinstance(obj, np.ndarray):
            flat = np.ascontiguousarray(obj).reshape(-1)
            stride, acc = [], 1
            for n in reversed(obj.shape):
                stride.insert(0, acc)
                acc *= n
            self.tensor(Strided(flat, 0, tuple(obj.shape), tuple(stride)))
        elif isinstance(obj, Strided):
            self.tensor(obj)
        elif isinstance(obj, tuple):
            out += b"("
            for item in obj:
                self.save(item)
            out += b"t"
        elif isinstance(obj, list):
            out += b"](" if obj else b"]"
            for item in obj:
                self.save(item)
            if obj:
                out += b"e"
        elif isinstance(obj, dict):
            out += _g("collections", "OrderedDict") + b")R" if isinstance(obj, collections.OrderedDict) else b"}"
            if obj:
                out += b"("
                for key, value in obj.items():
                    self.save(key)
                    self.save(value)
                out += b"u"
        else:
            raise TypeError(type(obj))

    def tensor(self, t: Strided) -> None:
        key = t.key or str(len(self.storages))
        self.storages.setdefault(key, (_STORAGE_NAMES[t.storage.dtype], t.storage))
        self.out += _g("torch._utils", "_rebuild_tensor_v2") + b"("
        self.out += b"("  # persistent id tuple
        for item in ("storage",):
            self.save(item)
        self.out += _g("torch", self.storages[key][0])
        self.save(key)
        self.save("cpu")
        self.save(int(t.storage.size))
        if self.legacy:
            self.save(None)  # view metadata
        self.out += b"tQ"  # TUPLE, BINPERSID
        self.save(t.offset)
        self.save(tuple(t.size))
        self.save(tuple(t.stride))
        self.save(False)
        self.out += _g("collections", "OrderedDict") + b")R"
        self.out += b"tR"


def write_torch_zip(path: Path, obj, prefix: str = "archive") -> Path:
    writer = PickleWriter()
    data = writer.dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", data)
        zf.writestr(f"{prefix}/byteorder", b"little")
        for key, (_, storage) in writer.storages.items():
            zf.writestr(f"{prefix}/data/{key}", storage.astype(storage.dtype.newbyteorder("<")).tobytes())
        zf.writestr(f"{prefix}/version", b"3\n")
    return path


def write_torch_legacy(path: Path, obj) -> Path:
    writer = PickleWriter(legacy=True)
    main = writer.dump(obj)
    parts = [
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps({"protocol_version": 1001, "little_endian": True,
                      "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2),
        main,
        pickle.dumps(list(writer.storages), protocol=2),
    ]
    for _, storage in writer.storages.values():
        parts.append(struct.pack("<q", storage.size) + storage.astype(storage.dtype.newbyteorder("<")).tobytes())
    path.write_bytes(b"".join(parts))
    return path


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], bf16: tuple[str, ...] = ()) -> Path:
    header, blobs, offset = {}, [], 0
    names = {np.float32: "F32", np.float16: "F16", np.int64: "I64", np.float64: "F64"}
    for name, array in tensors.items():
        if name in bf16:
            data = (np.asarray(array, np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
            dtype = "BF16"
        else:
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
            dtype = names[array.dtype.type]
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return path


def malicious_pickle(module: str, name: str, argument: str) -> bytes:
    """``module.name(argument)`` at unpickling time: GLOBAL, argument, TUPLE1, REDUCE."""
    arg = argument.encode()
    return b"\x80\x02" + _g(module, name) + b"X" + struct.pack("<I", len(arg)) + arg + b"\x85R."


def _tensors():
    rng = np.random.default_rng(0)
    return collections.OrderedDict(
        [
            ("conv.weight", rng.standard_normal((8, 3, 3, 3)).astype(np.float32)),
            ("bn.running_var", rng.uniform(0.5, 2, 8).astype(np.float32)),
            ("bn.num_batches_tracked", np.array(42, np.int64)),
            ("half", rng.standard_normal((4, 5)).astype(np.float16)),
            ("double", rng.standard_normal(3)),
            ("mask", np.array([True, False, True])),
            ("empty", np.zeros((0, 4), np.float32)),
        ]
    )


# -- tests ------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer", [write_torch_zip, write_torch_legacy], ids=["zip", "legacy"])
def test_round_trip_dtypes(tmp_path, writer):
    tensors = _tensors()
    path = writer(tmp_path / "ckpt.pth.tar", tensors)
    assert detect_format(path) == ("torch_zip" if writer is write_torch_zip else "torch_legacy")
    state = read_state_dict(path)
    assert list(state) == list(tensors)
    for key, value in tensors.items():
        assert state[key].dtype == value.dtype and state[key].shape == value.shape, key
        np.testing.assert_array_equal(state[key], value)
    assert "torch" not in sys.modules


@pytest.mark.parametrize("writer", [write_torch_zip, write_torch_legacy], ids=["zip", "legacy"])
def test_views_offsets_and_shared_storage(tmp_path, writer):
    storage = np.arange(24, dtype=np.float32)
    tensors = {
        "transposed": Strided(storage, 0, (4, 6), (1, 4), key="s"),  # a .t() of a (6, 4) tensor
        "tail": Strided(storage, 20, (2, 2), (2, 1), key="s"),  # same storage, offset 20
    }
    state = read_state_dict(writer(tmp_path / "views.pth", tensors))
    np.testing.assert_array_equal(state["transposed"], storage.reshape(6, 4).T)
    np.testing.assert_array_equal(state["tail"], [[20, 21], [22, 23]])


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_wrapped_checkpoint_and_module_prefix(tmp_path, wrapper):
    tensors = _tensors()
    obj = {"epoch": 90, "arch": "mobileone", "best_acc1": 71.4,
           wrapper: collections.OrderedDict(("module." + k, v) for k, v in tensors.items())}
    state = read_state_dict(write_torch_zip(tmp_path / "wrapped.pth.tar", obj, prefix="mobileone_s0"))
    assert list(state) == list(tensors)


@pytest.mark.parametrize("writer", ["zip", "legacy"])
@pytest.mark.parametrize("module,name", [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                         ("builtins", "exec"), ("subprocess", "check_call")])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, writer, module, name):
    marker = tmp_path / "pwned"
    if name in ("eval", "exec"):
        argument = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    elif module == "subprocess":
        argument = f"touch {marker}"
    else:
        argument = f"touch {marker}"
    payload = malicious_pickle(module, name, argument)
    path = tmp_path / "evil.pth.tar"
    if writer == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", payload)
            zf.writestr("archive/version", b"3\n")
    else:
        path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
                         + pickle.dumps({"little_endian": True}, protocol=2) + payload)
    with pytest.raises(EdgeMobileError) as info:
        read_state_dict(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and f"{module}.{name}" in message and "refused" in message
    assert not marker.exists()


def test_malicious_global_nested_inside_a_tensor_is_refused(tmp_path):
    # A well-formed checkpoint whose backward_hooks argument smuggles in builtins.getattr.
    data = bytearray(PickleWriter().dump({"w": np.zeros(2, np.float32)}))
    data = data.replace(_g("collections", "OrderedDict") + b")RtR", _g("builtins", "getattr") + b")RtR", 1)
    path = tmp_path / "sneaky.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", bytes(data))
        zf.writestr("archive/data/0", np.zeros(2, np.float32).tobytes())
    with pytest.raises(EdgeMobileError, match=r"builtins\.getattr"):
        read_state_dict(path)


def test_tensor_outside_its_storage_is_refused(tmp_path):
    storage = np.zeros(4, np.float32)
    path = write_torch_zip(tmp_path / "oob.pth", {"w": Strided(storage, 2, (4,), (1,))})
    with pytest.raises(EdgeMobileError, match="outside its storage"):
        read_state_dict(path)


def test_truncated_storage_is_a_clear_error(tmp_path):
    path = write_torch_zip(tmp_path / "ok.pth", {"w": np.zeros(10, np.float32)})
    broken = tmp_path / "broken.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data[:-4] if name.endswith("data/0") else data)
    with pytest.raises(EdgeMobileError, match="corrupt PyTorch checkpoint"):
        read_state_dict(broken)


def test_no_tensors_found(tmp_path):
    path = write_torch_zip(tmp_path / "meta.pth", {"epoch": 3, "arch": "x"})
    with pytest.raises(EdgeMobileError, match="no state_dict found"):
        read_state_dict(path)


def test_safetensors_round_trip_with_bfloat16(tmp_path):
    rng = np.random.default_rng(1)
    tensors = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": np.arange(5, dtype=np.int64),
               "c": rng.standard_normal(6).astype(np.float16),
               "bf": np.array([1.0, -2.5, 3.140625], np.float32)}
    path = write_safetensors(tmp_path / "model.safetensors", tensors, bf16=("bf",))
    assert detect_format(path) == "safetensors"
    state = read_safetensors(path)
    for key in ("a", "b", "c"):
        np.testing.assert_array_equal(state[key], tensors[key])
    np.testing.assert_array_equal(state["bf"], tensors["bf"])  # exactly representable in bf16


def test_corrupt_safetensors_offsets(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1000]}}).encode()
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(EdgeMobileError, match="corrupt safetensors"):
        read_state_dict(path)


def test_detect_format_rejects_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello, these are not weights")
    with pytest.raises(EdgeMobileError, match="not a weights file"):
        detect_format(tmp_path / "notes.txt")
    with pytest.raises(EdgeMobileError, match="no such weights file"):
        detect_format(tmp_path / "missing.pth")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.md", "x")
    with pytest.raises(EdgeMobileError, match="neither a PyTorch checkpoint"):
        detect_format(tmp_path / "other.zip")
    (tmp_path / "w.h5").write_bytes(checkpoints._HDF5_MAGIC + b"\0" * 64)
    assert detect_format(tmp_path / "w.h5") == "keras_h5"
    with pytest.raises(EdgeMobileError, match="Keras weights file"):
        read_state_dict(tmp_path / "w.h5")


def test_writer_matches_torch_save_layout():
    """Guard for the writer itself: the pickle it emits is what the shared checkpoint holds."""
    data = PickleWriter().dump(collections.OrderedDict([("w", np.zeros((2, 3), np.float32))]))
    ops = [op.name for op, _, _ in __import__("pickletools").genops(io.BytesIO(data))]
    assert ops[:4] == ["PROTO", "GLOBAL", "EMPTY_TUPLE", "REDUCE"]
    assert "BINPERSID" in ops and ops[-1] == "STOP"


# -- MobileOne checkpoints written the way Apple's and timm's files are laid out -------------


def _with_batch_counters(state):
    """Add the int64 ``num_batches_tracked`` buffers torch writes next to every BatchNorm."""
    out = collections.OrderedDict()
    for key, value in state.items():
        out[key] = value
        if key.endswith(".running_var"):
            out[key[: -len("running_var")] + "num_batches_tracked"] = np.array(1000, np.int64)
    return out


def _apple_to_timm(key: str) -> str:
    import re

    key = re.sub(r"^stage0\.", "stem.", key)
    key = re.sub(r"^stage(\d+)\.", lambda m: f"stages.{int(m.group(1)) - 1}.", key)
    for old, new in ((".rbr_conv.", ".conv_kxk."), (".rbr_scale.", ".conv_scale."), (".rbr_skip.", ".identity."),
                     (".se.reduce.", ".attn.fc1."), (".se.expand.", ".attn.fc2.")):
        key = key.replace(old, new)
    return re.sub(r"^linear\.", "head.fc.", key)


@pytest.mark.convert
def test_mobileone_unfused_torch_checkpoint_round_trip(tmp_path):
    """Train-time model with random BN -> Apple-style unfused zip (wrapped, module.) -> fused model."""
    from edgemobile.networks import mobileone, mobileone_architecture, mobileone_weights

    size = 64
    train = mobileone.build_train_model("s0", input_shape=(size, size, 3), classifier_activation=None)
    randomize_batchnorm(train, seed=7)
    state = _with_batch_counters(mobileone_weights.export_state_dict(train))
    assert "stage1.0.rbr_conv.3.bn.running_var" in state and "stage1.0.rbr_skip.weight" not in state
    assert state["stage1.0.rbr_conv.0.conv.weight"].shape == (48, 1, 3, 3)  # depthwise, PyTorch layout
    assert state["stage1.1.rbr_conv.0.conv.weight"].shape == (48, 48, 1, 1)
    assert state["linear.weight"].shape == (1000, 1024)
    path = write_torch_zip(tmp_path / "mobileone_s0_unfused.pth.tar",
                           {"state_dict": collections.OrderedDict(("module." + k, v) for k, v in state.items())})

    x = np.random.default_rng(0).standard_normal((2, size, size, 3)).astype(np.float32)
    expected = train(x, training=False).numpy()
    reloaded = mobileone.build_train_model("s0", path, input_shape=(size, size, 3), classifier_activation=None)
    np.testing.assert_array_equal(reloaded(x, training=False).numpy(), expected)
    fused = mobileone.build_inference_model("s0", path, input_shape=(size, size, 3), classifier_activation=None)
    assert mobileone_architecture.model_form(fused) == "inference"
    got = fused(x).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    assert "torch" not in sys.modules

    # a fused checkpoint cannot go into the train-time model; a wrong variant names the problems
    fused_path = write_torch_zip(tmp_path / "mobileone_s0.pth.tar", mobileone_weights.export_state_dict(fused))
    with pytest.raises(EdgeMobileError, match="cannot be un-fused"):
        mobileone_weights.load_weights(reloaded, fused_path)
    with pytest.raises(EdgeMobileError, match=r"does not fit mobileone_s1 .*87 shape mismatches.*\(48, 3, 3, 3\) vs \(64, 3, 3, 3\)"):
        mobileone.build_inference_model("s1", fused_path, input_shape=(size, size, 3))


@pytest.mark.convert
def test_mobileone_timm_safetensors_round_trip(tmp_path):
    """timm's key names (stem/stages/conv_kxk/conv_scale/identity/attn/head.fc), with S4's SE."""
    from edgemobile.networks import mobileone, mobileone_weights

    size = 64
    train = mobileone.build_train_model("s4", input_shape=(size, size, 3), classifier_activation=None)
    randomize_batchnorm(train, seed=11)
    state = _with_batch_counters(mobileone_weights.export_state_dict(train))
    timm_state = {_apple_to_timm(k): v for k, v in state.items()}
    assert "stages.2.19.attn.fc1.weight" in timm_state and "stem.conv_kxk.0.conv.weight" in timm_state
    assert "stages.0.1.identity.weight" not in timm_state and "stages.0.3.identity.weight" in timm_state
    path = write_safetensors(tmp_path / "mobileone_s4.apple_in1k.safetensors", timm_state)

    x = np.random.default_rng(1).standard_normal((1, size, size, 3)).astype(np.float32)
    expected = train(x, training=False).numpy()
    fused = mobileone.build_inference_model("s4", path, input_shape=(size, size, 3), classifier_activation=None)
    got = fused(x).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
