"""Which ops XNNPACK takes (edgemobile.runtime.delegation), and convert's warning when int8 ops
fall back to TFLite's builtin kernels."""

from __future__ import annotations

import re

import pytest

from edgemobile.cli.main import main
from edgemobile.runtime.delegation import (
    fallback_warning,
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
