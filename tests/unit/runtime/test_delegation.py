"""Which ops XNNPACK takes (edgemobile.runtime.delegation), and convert's warning when int8 ops
fall back to TFLite's builtin kernels."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgemobile.cli.main import main
from edgemobile.runtime.delegation import (
    HostCPU,
    fallback_warning,
    int8_slower_note,
    measure_against_float,
    model_delegation,
    xnnpack_delegation,
)
from edgemobile.runtime.interpreter import TFLiteClassifier, model_ops

GOOGLE_V3 = "weights/mobilenet_v3/v3-small_224_1.0_uint8.tflite"  # XNNPACK takes HARD_SWISH only in float
GOOGLE_V1 = "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite"


def test_hard_swish_of_a_uint8_model_stays_on_builtin_kernels(shared):
    data = (shared / GOOGLE_V3).read_bytes()
    delegation = model_delegation(data)
    ops = model_ops(TFLiteClassifier(data, use_xnnpack=False).interpreter)
    assert delegation.applied and delegation.total == len(ops)
    by_type = dict(delegation.fallback_by_type())
    hard_swish = sum(op["op_name"] == "HARD_SWISH" for op in ops)
    assert hard_swish > 0 and by_type["HARD_SWISH (uint8)"] == hard_swish
    assert {op.name for op in delegation.delegated} >= {"CONV_2D", "DEPTHWISE_CONV_2D"}
    assert not {op.name for op in delegation.delegated} & {"HARD_SWISH"}
    warning = fallback_warning(delegation, "v3.tflite")
    assert warning.startswith("v3.tflite: XNNPACK takes ") and f"{hard_swish}× HARD_SWISH (uint8)" in warning
    assert "SOFTMAX" not in warning and "\n" not in warning  # the classifier head is not worth a warning


def test_only_the_classifier_head_on_builtin_kernels_is_no_warning(shared):
    delegation = model_delegation((shared / GOOGLE_V1).read_bytes())
    assert delegation.applied and delegation.fallback  # SOFTMAX (uint8) and a 1×1 pool stay on builtin
    assert all(op.size <= delegation.head_size for op in delegation.fallback)
    assert fallback_warning(delegation, "v1.tflite") is None


def test_without_xnnpack_nothing_is_delegated(shared):
    model = TFLiteClassifier(shared / GOOGLE_V1, use_xnnpack=False)
    delegation = xnnpack_delegation(model.interpreter)
    assert not delegation.applied and delegation.delegated == () and len(delegation.fallback) == delegation.total > 0


class GraphInterpreter:
    """An allocated interpreter's node and tensor listing for a hand-made graph: uint8 pixels
    QUANTIZEd to int8, two convolutions XNNPACK takes, an int8 ADD of a tensor with a scale
    5000× smaller than its output's, a HARD_SWISH, the classifier and the QUANTIZE of its
    scores to the uint8 output."""

    TENSORS = {0: ("uint8", (1, 32, 32, 3), 1 / 128), 1: ("int8", (1, 32, 32, 3), 1 / 128),
               2: ("int8", (8, 1, 1, 3), 0.01), 3: ("int8", (1, 32, 32, 8), 0.05), 4: ("int8", (1, 32, 32, 8), 1e-5),
               5: ("int8", (1, 32, 32, 8), 0.05), 6: ("int8", (1, 32, 32, 8), 0.05), 7: ("int8", (1, 10), 0.1),
               8: ("uint8", (1, 10), 0.1)}
    NODES = [("QUANTIZE", [0], [1]), ("CONV_2D", [1, 2], [3]), ("CONV_2D", [1, 2], [4]), ("ADD", [3, 4], [5]),
             ("HARD_SWISH", [5], [6]), ("FULLY_CONNECTED", [6], [7]), ("QUANTIZE", [7], [8]),
             ("DELEGATE", [1, 2], [3, 4])]

    def _get_ops_details(self):
        return [{"index": i, "op_name": name, "inputs": np.array(ins), "outputs": np.array(outs),
                 "result_types": [np.dtype(self.TENSORS[outs[0]][0]).type]} for i, (name, ins, outs) in enumerate(self.NODES)]

    def get_tensor_details(self):
        return [{"index": i, "dtype": np.dtype(d), "shape": np.array(shape), "quantization": (scale, 0)}
                for i, (d, shape, scale) in self.TENSORS.items()]

    def get_input_details(self):
        return [t for t in self.get_tensor_details() if t["index"] == 0]

    def get_output_details(self):
        return [t for t in self.get_tensor_details() if t["index"] == 8]


def test_io_quantize_is_not_counted_and_real_fallback_is_with_its_measured_cause():
    delegation = xnnpack_delegation(GraphInterpreter())
    assert [op.name for op in delegation.delegated] == ["CONV_2D", "CONV_2D"]
    assert [(op.name, op.io) for op in delegation.fallback] == [
        ("QUANTIZE", True), ("ADD", False), ("HARD_SWISH", False), ("FULLY_CONNECTED", False), ("QUANTIZE", True)]
    assert [op.name for op in delegation.slow_fallback] == ["ADD", "HARD_SWISH"]  # not the uint8 pixels' QUANTIZE
    add = delegation.slow_fallback[0]
    assert add.scale_ratio == pytest.approx(1e-5 / 0.05)  # outside XNNPACK's [1/1024, 256)
    assert delegation.slow_fallback[1].scale_ratio is None
    warning = fallback_warning(delegation, "m.tflite")
    assert warning == ("m.tflite: XNNPACK takes 2 of its 7 ops; 2 run on TFLite's slower builtin kernels "
                       "(1× ADD (int8), 1× HARD_SWISH (int8)): 1 has an input/output scale ratio outside XNNPACK's "
                       "[1/1024, 256) (up to 0.0002: int8 ranges that far apart meet there); XNNPACK does not take "
                       "the other 1 at its type")
    assert "BatchNorm" not in warning and "QUANTIZE" not in warning


def test_int8_slower_note_only_when_measured_slower():
    xeon = HostCPU("Intel(R) Xeon(R) Processor", "x86_64", ("AVX-512F", "AVX2", "FMA"))
    line = int8_slower_note([("m.tflite, 1 thread", 0.42, 0.36)], xeon)
    assert line.startswith("int8 ran slower than float on this machine (m.tflite, 1 thread: 0.42 vs 0.36 ms): ")
    assert "Intel(R) Xeon(R) Processor (x86_64 with AVX-512F, AVX2, FMA)" in line and "ARM" in line
    assert "\n" not in line
    assert int8_slower_note([("a", 0.35, 0.34), ("b", 0.30, 0.36)], xeon) is None  # within noise, or faster
    assert int8_slower_note([("a", None, 0.3), ("b", 0.5, None)], xeon) is None  # not both timed
    both = int8_slower_note([("a", 1.35, 0.90), ("b", 0.2, 0.3), ("c", 0.5, 0.4)], xeon)
    assert "(a: 1.35 vs 0.90 ms; c: 0.50 vs 0.40 ms)" in both and "b:" not in both
    pi = int8_slower_note([("m", 9.0, 6.0)], HostCPU("Cortex-A72", "aarch64", ("NEON",)))
    assert "Cortex-A72 (aarch64 with NEON)" in pi and "vector units" not in pi


def test_runtime_without_node_listing_cannot_tell():
    class OldInterpreter:  # an interpreter API without _get_ops_details (tflite_runtime < 2.5)
        pass

    assert xnnpack_delegation(OldInterpreter()) is None
    assert fallback_warning(None, "x.tflite") is None


def test_convert_warns_when_int8_ops_fall_back(shared, tmp_path, capsys):
    """MobileNetV3 with untrained BatchNorm statistics (--weights none): the int8 ADDs of
    hard-swish get scales XNNPACK refuses, so they run on the builtin kernels."""
    pytest.importorskip("tensorflow")
    out = tmp_path / "v3s_none_int8.tflite"
    assert main(["convert", "--model", "mobilenet_v3_small", "--weights", "none", "--int8", "--plain",
                 "--calibration", str(shared / "imagenet/calib"), "--num-calibration", "8", "-o", str(out),
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("edgemobile: warning: ")]
    assert len(warnings) == 1, err
    expected = fallback_warning(model_delegation(out.read_bytes()), str(out))
    measured = re.search(r"; measured here, it runs at ([0-9.]+)× its float model's latency \(([0-9.]+) vs "
                         r"([0-9.]+) ms, 1 thread\)", warnings[0])
    assert measured, warnings[0]
    assert warnings[0].replace(measured.group(0), "") == f"edgemobile: warning: {expected}"
    ratio, int8_ms, float_ms = map(float, measured.groups())
    assert int8_ms > 0 and float_ms > 0 and ratio == pytest.approx(int8_ms / float_ms, abs=0.01)
    assert "ADD (int8)" in warnings[0]
    # the cause is measured on the model's tensors: every ADD left out has a scale ratio XNNPACK refuses
    assert "they have an input/output scale ratio outside XNNPACK's [1/1024, 256)" in warnings[0]


def test_latency_against_float_is_measured_side_by_side(shared):
    """The measurement behind the warning: both models really run (their medians differ as the
    models do), and the ratio is of the two."""
    v3 = (shared / GOOGLE_V3).read_bytes()
    v1 = (shared / GOOGLE_V1).read_bytes()
    latency = measure_against_float(v3, v1, budget_s=0.3)
    assert latency.model_ms > 0 and latency.float_ms > 0
    assert latency.ratio == latency.model_ms / latency.float_ms
    assert latency.model_ms > latency.float_ms  # V3-Small at 224 does far more work than V1 0.25 at 128
    line = fallback_warning(model_delegation(v3), "v3.tflite", latency)
    assert f"runs at {latency.ratio:.2f}× its float model's latency" in line and "\n" not in line
