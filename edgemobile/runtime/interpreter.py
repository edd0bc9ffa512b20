"""Running a .tflite classifier with the small runtime — never TensorFlow unless nothing
else is installed.

Interpreter choice, in order: ``ai-edge-litert`` (LiteRT), ``tflite_runtime`` (the only
wheel for 32-bit Raspberry Pi OS), then ``tensorflow.lite`` as a last resort.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np

from edgemobile.errors import BadModelFileError, EdgeMobileError, first_line
from edgemobile.native_stderr import native_stderr_filtered
from edgemobile.tflite.model import check_flatbuffer, read_tflite


@functools.lru_cache(maxsize=1)
def interpreter_backend() -> tuple[str, type]:
    """(backend name, Interpreter class) of the first runtime that imports; the class
    allocates without printing the delegate's INFO notice (see :mod:`edgemobile.native_stderr`)."""
    name, cls = _import_backend()
    return name, _without_delegate_notice(cls)


def _import_backend() -> tuple[str, type]:
    try:
        from ai_edge_litert.interpreter import Interpreter

        return "ai-edge-litert", Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]

        return "tflite_runtime", Interpreter
    except ImportError:
        pass
    try:
        import tensorflow as tf  # last resort only: the runtime install has no TensorFlow

        return "tensorflow.lite", tf.lite.Interpreter
    except ImportError:
        raise EdgeMobileError(
            "no TFLite runtime installed: pip install ai-edge-litert "
            "(or tflite-runtime on 32-bit Raspberry Pi OS)"
        ) from None


def _without_delegate_notice(cls: type) -> type:
    """``cls`` whose ``allocate_tensors`` (where the XNNPACK delegate is created, and
    announced on fd 2 once per interpreter) drops that one line."""

    def allocate_tensors(self, *args, **kwargs):
        with native_stderr_filtered():
            return cls.allocate_tensors(self, *args, **kwargs)

    return type(cls.__name__, (cls,), {"allocate_tensors": allocate_tensors, "__module__": __name__})


def open_interpreter(model: bytes, source: str, num_threads: int | None = 1,
                     use_xnnpack: bool = True) -> tuple[str, object]:
    """(backend name, allocated interpreter) of checked model bytes, or a one-line error."""
    check_flatbuffer(model, source)
    backend, interpreter_cls = interpreter_backend()
    kwargs: dict = {"model_content": model, "num_threads": num_threads}
    if not use_xnnpack:
        kwargs["experimental_op_resolver_type"] = builtin_ref_resolver(backend)
    try:
        interpreter = interpreter_cls(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = first_line(exc)
        raise BadModelFileError(f"{source}: cannot be loaded as a TFLite model ({first[:200]})") from None
    return backend, interpreter


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.dtype in (np.int8, np.uint8, np.int16) and self.scale > 0


def _tensor_info(detail: dict) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(
        index=detail["index"],
        name=detail["name"],
        shape=tuple(int(d) for d in detail["shape"]),
        dtype=np.dtype(detail["dtype"]),
        scale=float(scale),
        zero_point=int(zero_point),
    )


class TFLiteClassifier:
    """One image in, one score vector out; hides input quantization and output dequantization.

    ``run`` takes the *normalized float* input the model's preprocessing spec produces and
    quantizes it with the model's own input scale/zero-point when the input is integer, so a
    float model and its int8 twin are fed exactly the same values.
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        num_threads: int | None = 1,
        use_xnnpack: bool = True,
        source: str | None = None,
    ):
        self.source = source or ("<bytes>" if isinstance(model, bytes) else str(model))
        self.model_bytes = model if isinstance(model, bytes) else read_tflite(model)
        self.backend, self.interpreter = open_interpreter(self.model_bytes, self.source, num_threads, use_xnnpack)
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise EdgeMobileError(
                f"{self.source}: expected an image classifier with 1 input and 1 output, "
                f"found {len(inputs)} inputs and {len(outputs)} outputs"
            )
        self.input = _tensor_info(inputs[0])
        self.output = _tensor_info(outputs[0])
        shape = self.input.shape
        if len(shape) != 4 or shape[-1] != 3 or shape[1] != shape[2] or shape[1] <= 0:
            raise EdgeMobileError(f"{self.source}: input shape {list(shape)} is not a square RGB image (1, H, W, 3)")
        if shape[0] != 1:
            self.interpreter.resize_tensor_input(self.input.index, [1, *shape[1:]], strict=False)
            self.interpreter.allocate_tensors()
        if len(self.output.shape) != 2:
            raise EdgeMobileError(f"{self.source}: output shape {list(self.output.shape)} is not (1, classes)")

    @property
    def input_size(self) -> int:
        return self.input.shape[1]

    @property
    def num_outputs(self) -> int:
        return self.output.shape[-1]

    @functools.cached_property
    def outputs_probabilities(self) -> bool:
        """True when the output tensor is produced by SOFTMAX (maybe via a (de)quantize)."""
        producers = {}
        for op in self.graph_ops():
            for out in op["outputs"]:
                producers[int(out)] = op
        tensor, seen = self.output.index, 0
        while tensor in producers and seen < 4:
            op = producers[tensor]
            if op["op_name"] == "SOFTMAX":
                return True
            if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE", "RESHAPE"):
                return False
            tensor, seen = int(op["inputs"][0]), seen + 1
        return False

    def graph_ops(self) -> list[dict]:
        """The model's own ops; delegate nodes (XNNPACK partitions) are left out."""
        return model_ops(self.interpreter)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Normalized float input → the model's input dtype (quantized when integer)."""
        if not self.input.quantized:
            return x.astype(self.input.dtype, copy=False)
        # Exactly TFLite's QUANTIZE kernel: zero_point + round-half-away-from-zero(x / scale),
        # in float32. Normalized pixels often sit on exact half steps (MobileNet: (p-127.5)/127.5),
        # and numpy's round-half-to-even would add a ±½-step checkerboard of noise there.
        scaled = x.astype(np.float32) / np.float32(self.input.scale)
        q = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5)) + self.input.zero_point
        info = np.iinfo(self.input.dtype)
        return np.clip(q, info.min, info.max).astype(self.input.dtype)

    def raw_pixel_offset(self, spec) -> int | None:
        """For an integer input whose quantization *is* ``spec``'s normalization (to within
        half a step: scale = 1/std, zero point = mean), the constant that turns pixels into
        input values — Android, MediaPipe and Coral feed raw pixels to such models, so eval,
        predict and inspect do too. None when the input needs real quantization."""
        if not self.input.quantized:
            return None
        pixel_zero = self.input.zero_point + (128 if self.input.dtype == np.int8 else 0)  # on the 0..255 scale
        if not spec.fed_raw_pixels(self.input.scale, pixel_zero):
            return None
        return -128 if self.input.dtype == np.int8 else 0

    def encode_as_device(self, x: np.ndarray, spec) -> np.ndarray:
        """Normalized image ``x`` (made by ``spec``) → what a device feeds: its raw pixels
        shifted by :meth:`raw_pixel_offset` when there is one (half a step off :meth:`encode`
        for MobileNet's [-1, 1], where pixels sit on half steps), else :meth:`encode`."""
        offset = self.raw_pixel_offset(spec)
        if offset is None:
            return self.encode(x)
        pixels = np.rint(x * np.asarray(spec.std, np.float32) + np.asarray(spec.mean, np.float32))
        return (np.clip(pixels, 0, 255) + offset).astype(self.input.dtype)

    def run(self, x: np.ndarray) -> np.ndarray:
        """One normalized image (H, W, 3) → float32 output vector (dequantized)."""
        return self.run_encoded(self.encode(x))

    def run_encoded(self, x: np.ndarray) -> np.ndarray:
        """Like :meth:`run` for input already passed through :meth:`encode`."""
        return self.dequantize(self.run_raw(x))

    def run_raw(self, x: np.ndarray) -> np.ndarray:
        """The output tensor exactly as the interpreter left it (int8/uint8 for integer
        models), for input already passed through :meth:`encode`."""
        self.interpreter.set_tensor(self.input.index, x[None])
        self.invoke_only()
        return self.interpreter.get_tensor(self.output.index)[0].copy()

    def dequantize(self, raw: np.ndarray) -> np.ndarray:
        """Raw output values (any leading shape) → float32 scores."""
        if self.output.quantized:
            return (raw.astype(np.float32) - self.output.zero_point) * self.output.scale
        return raw.astype(np.float32, copy=False)

    def invoke_only(self) -> None:
        """Run inference on whatever input is set (for interpreter-only benchmarks)."""
        try:
            self.interpreter.invoke()
        except RuntimeError as exc:  # a kernel refusing what the model asks of it
            first = first_line(exc)
            raise EdgeMobileError(f"{self.source}: inference failed ({first[:200]})") from None


def random_input(info: dict) -> np.ndarray:
    """A fixed random batch of one for an input tensor (``info``: its ``dtype`` and ``shape``,
    as ``get_input_details`` gives them): integers over the dtype's range, floats in [-1, 1];
    what timing runs feed, since latency does not depend on the values."""
    rng = np.random.default_rng(0)
    dtype = np.dtype(info["dtype"])
    shape = [1, *info["shape"][1:]]
    if np.issubdtype(dtype, np.integer):
        bounds = np.iinfo(dtype)
        return rng.integers(bounds.min, int(bounds.max) + 1, size=shape, dtype=dtype)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def model_ops(interpreter) -> list[dict]:
    """``interpreter``'s ops in execution order, without delegate nodes (XNNPACK partitions)."""
    return [op for op in interpreter._get_ops_details() if op["op_name"] != "DELEGATE"]


def tensor_inspector(model: bytes, num_threads: int = 2):
    """An allocated interpreter whose every intermediate tensor stays readable after
    ``invoke()``: all tensors preserved, builtin reference kernels (XNNPACK would fuse ops
    and share buffers)."""
    backend, cls = interpreter_backend()
    interpreter = cls(model_content=bytes(model), num_threads=num_threads, experimental_preserve_all_tensors=True,
                      experimental_op_resolver_type=builtin_ref_resolver(backend))
    interpreter.allocate_tensors()
    return interpreter


def builtin_ref_resolver(backend: str):
    """The op resolver without default delegates (XNNPACK off), per backend module."""
    if backend == "ai-edge-litert":
        from ai_edge_litert.interpreter import OpResolverType
    elif backend == "tflite_runtime":
        from tflite_runtime.interpreter import OpResolverType  # type: ignore[import-not-found]
    else:
        import tensorflow as tf

        OpResolverType = tf.lite.experimental.OpResolverType
    return OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES


def to_probabilities(scores: np.ndarray, already_probabilities: bool) -> np.ndarray:
    """Softmax over the last axis unless the model already outputs probabilities."""
    if already_probabilities:
        return scores
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
