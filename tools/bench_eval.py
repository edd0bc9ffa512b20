"""Eval throughput next to the interpreter-only rate of the same model, in one run.

    python tools/bench_eval.py --data ../shared/imagenet/val [--model FILE.tflite] [--threads 1]

Without --model, MobileNetV1 1.0/224 is converted to int8 with random weights (speed does not
depend on the weights) and calibrated on --data. The interpreter-only rate invokes the model
on one prepared input in a loop; the eval rate is `edgemobile eval`'s pipeline (decode +
preprocess on worker threads, overlapped with inference) on the same images. Target: eval ≥
0.85 × interpreter-only. The two are measured alternately, `--rounds` times, and the medians
compared, so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgemobile.data.datasets import find_images  # noqa: E402
from edgemobile.eval.evaluate import run_predictors  # noqa: E402
from edgemobile.eval.predictors import TFLitePredictor  # noqa: E402


def interpreter_only_rate(predictor: TFLitePredictor, x, seconds: float) -> float:
    model = predictor.model
    model.interpreter.set_tensor(model.input.index, model.encode(x)[None])
    for _ in range(5):
        model.invoke_only()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.invoke_only()
        count += 1
    return count / (time.perf_counter() - start)


def eval_rate(predictor: TFLitePredictor, images: list[Path]) -> float:
    start = time.perf_counter()
    run_predictors([predictor], images, progress=False)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="image folder (e.g. ../shared/imagenet/val)")
    parser.add_argument("--model", help=".tflite made by edgemobile (default: MobileNetV1 1.0/224 int8, random weights)")
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument("--images", type=int, default=400, help="images per eval round (default 400)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    images = find_images(args.data)[: args.images]
    model_path = args.model
    if model_path is None:
        import contextlib
        import io

        from edgemobile.networks.zoo import resolve
        from edgemobile.quantization.convert import CalibrationSet, convert_variant

        variant = resolve("mobilenet")
        calibration = CalibrationSet.from_folder(args.data, 32)
        with contextlib.redirect_stdout(io.StringIO()):
            result = convert_variant(variant, "int8", "none", calibration, progress=False)
        model_path = Path(tempfile.mkdtemp()) / "mobilenet_v1_1.0_224_int8.tflite"
        model_path.write_bytes(result.tflite)

    predictor = TFLitePredictor(model_path, num_threads=args.threads)
    x = predictor.spec(images[0])
    eval_rates, interp_rates = [], []
    for _ in range(args.rounds):
        eval_rates.append(eval_rate(predictor, images))
        interp_rates.append(interpreter_only_rate(predictor, x, seconds=len(images) / max(eval_rates[-1], 1)))
    ev, it = statistics.median(eval_rates), statistics.median(interp_rates)
    print(f"model: {Path(model_path).name} ({predictor.model.input.dtype.name} input, {args.threads} interpreter thread(s), "
          f"{os.cpu_count()} cores, runtime {predictor.model.backend})")
    print(f"{'':<22}{'images/s':>10}")
    print(f"{'interpreter only':<22}{it:>10.1f}")
    print(f"{'edgemobile eval':<22}{ev:>10.1f}")
    print(f"ratio eval / interpreter-only: {ev / it:.3f} (target >= 0.85); rounds: "
          f"eval {[round(r, 1) for r in eval_rates]}, interpreter {[round(r, 1) for r in interp_rates]}")


if __name__ == "__main__":
    main()
