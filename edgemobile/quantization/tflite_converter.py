"""One call of TensorFlow's TFLite converter: a Keras model to a flatbuffer at a precision.

Always ``TFLiteConverter.from_keras_model`` (``from_concrete_functions`` on a Keras 3 model
silently produces NaNs). Full-integer conversions calibrate first, let a hook choose the
statistics, then run the converter's own quantizer on them.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

from edgemobile.errors import EdgeMobileError, first_line
from edgemobile.native_stderr import native_stderr_filtered
from edgemobile.quantization.exact_ranges import exact_minmax_hook

PRECISIONS = ("float32", "float16", "dynamic", "int8", "uint8")
FULL_INTEGER = ("int8", "uint8")


def convert_keras(model, precision: str, representative: Callable | None = None,
                  calibrated_hook: Callable[[bytes], bytes] | None = None) -> bytes:
    """Convert a Keras model; ``representative`` is required for int8/uint8.

    ``calibrated_hook`` (full-integer only) receives the calibrated float model — the
    converter's min/max statistics recorded in it — and returns it with the statistics it
    wants quantized; the converter's own quantizer then makes the integer model from it.
    Default: exact min/max (:mod:`edgemobile.quantization.exact_ranges`), which repairs
    ranges TFLite's calibrator corrupts.
    """
    if precision not in PRECISIONS:
        raise EdgeMobileError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if precision == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision in FULL_INTEGER:
        if representative is None:
            raise EdgeMobileError(f"{precision} conversion needs calibration images")
        io_type = tf.int8 if precision == "int8" else tf.uint8
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    try:
        if precision in FULL_INTEGER:
            hook = calibrated_hook or exact_minmax_hook(representative)
            converter._experimental_calibrate_only = True
            with warnings.catch_warnings():
                # "Statistics for quantized inputs were expected": the calibrator's own notice.
                warnings.simplefilter("ignore", UserWarning)
                calibrated = hook(converter.convert())
            return quantize_calibrated(calibrated, precision)
        return converter.convert()
    except EdgeMobileError:
        raise
    except Exception as exc:  # the converter raises ConverterError, RuntimeError, ValueError…
        first = first_line(exc)
        raise EdgeMobileError(f"TFLite conversion to {precision} failed: {first[:300]}") from None


def quantize_calibrated(calibrated: bytes, precision: str, keep_float: Sequence[str] = ()) -> bytes:
    """The converter's quantizer on a calibrated float model whose statistics are chosen:
    all-integer, except the ops whose output tensors ``keep_float`` names, which stay float
    between a DEQUANTIZE and a QUANTIZE (the input and output stay ``precision``)."""
    import tensorflow as tf
    from tensorflow.lite.python.convert import mlir_quantize

    io_type = tf.int8 if precision == "int8" else tf.uint8
    with native_stderr_filtered():  # the quantizer prints its options to fd 2
        return mlir_quantize(calibrated, input_data_type=io_type, output_data_type=io_type,
                             denylisted_nodes=list(keep_float) or None)
