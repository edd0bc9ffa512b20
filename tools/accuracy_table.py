"""Regenerate the int8 ablation table of docs/accuracy.md on real data.

    python tools/accuracy_table.py [--shared ../shared] [--num-calibration 500]
                                   [--models a25,a50,a75,v3s,s0] [--out DIR] [--update-docs]

For each model family with real weights in the shared data folder (see ../shared/README.md):
the float model, then int8 models from the plain converter, each technique alone, and the
default combination, all evaluated on ``imagenet/val`` against the float TFLite model
(top-1, drop, agreement, KL) — :func:`edgemobile.eval.report.run_report` with ``ablation``.
Calibration: ``--num-calibration`` images drawn from ``imagenet/calib`` (seed 0), the same
for every configuration. Writes ``accuracy_table.md`` and ``accuracy_table.json`` to
``--out`` (default: a temp folder); ``--update-docs`` also replaces the table between the
``<!-- accuracy-table:begin -->`` / ``<!-- accuracy-table:end -->`` markers in docs/accuracy.md.
Heavy (tens of minutes on 2 cores): a tool, not a test.

Peer rows: with ``--litert-python PYTHON`` (an interpreter of an environment with PyPI's
``litert-quantizer``, which pins its own ai-edge-litert and is never an edgemobile
dependency — see ``tools/litert_quantizer_peer.py`` for the two-line setup) every family
also gets Google's quantizer on the same float .tflite and calibration images: its default
a8w8 recipe (min/max) and OCTAV, evaluated exactly like edgemobile's rows. A model the
quantizer refuses gets a row with its error instead of numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgemobile.errors import EdgeMobileError  # noqa: E402
from edgemobile.eval.report import ModelSpec, markdown, run_report  # noqa: E402
from edgemobile.networks.request import ModelRequest  # noqa: E402
from edgemobile.outputs import write_atomic  # noqa: E402
from edgemobile.quantization.convert import CalibrationSet  # noqa: E402

BEGIN, END = "<!-- accuracy-table:begin -->", "<!-- accuracy-table:end -->"

# key: (zoo name, alpha, weights file under shared/weights, label, weights provenance)
MODELS = {
    "a25": ("mobilenet_v1", 0.25, 224, "mobilenet_v1/mobilenet_2_5_224_tf.h5", "MobileNetV1 0.25/224", "original"),
    "a50": ("mobilenet_v1", 0.5, 160, "mobilenet_v1/mobilenet_5_0_160_tf.h5", "MobileNetV1 0.5/160", "QAT-derived"),
    "a75": ("mobilenet_v1", 0.75, 192, "mobilenet_v1/mobilenet_7_5_192_tf.h5", "MobileNetV1 0.75/192", "QAT-derived"),
    "v3s": ("mobilenet_v3_small", 1.0, 224, "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5",
            "MobileNetV3-Small 1.0/224", "QAT-derived"),
    "s0": ("mobileone_s0", None, 224, "mobileone/mobileone_s0.pth.tar", "MobileOne-S0", "original, fused"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="shared data folder (default ../shared)")
    parser.add_argument("--num-calibration", type=int, default=500, help="calibration images (default 500)")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated keys from {', '.join(MODELS)}")
    parser.add_argument("--limit", type=int, help="evaluate only N val images (quick look)")
    parser.add_argument("--out", help="folder for accuracy_table.md/.json (default: a new temp folder)")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the table in docs/accuracy.md")
    parser.add_argument("--litert-python", help="python of a venv with litert-quantizer: add its rows (a8w8, OCTAV)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    shared = Path(args.shared)
    if not (shared / "imagenet" / "val").is_dir():
        sys.exit(f"accuracy_table: {shared}/imagenet/val not found (pass --shared)")
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in MODELS]
    if unknown:
        sys.exit(f"accuracy_table: unknown model keys {unknown}; choose from {', '.join(MODELS)}")
    out = Path(args.out or tempfile.mkdtemp(prefix="accuracy_table_"))
    out.mkdir(parents=True, exist_ok=True)
    calibration = CalibrationSet.from_folder(shared / "imagenet" / "calib", args.num_calibration, 0,
                                             source="shared/imagenet/calib (stratified, seed 0)")
    peers = litert_quantizer_peers(args.litert_python) if args.litert_python else ()
    results = []
    for key in keys:
        name, alpha, resolution, weights, label, provenance = MODELS[key]
        spec = ModelSpec(ModelRequest(name, alpha, resolution, str(shared / "weights" / weights)), f"{label} ({provenance})")
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # Keras' exporter prints every traced tensor
            result = run_report([spec], shared / "imagenet" / "val", calibration, ablation=True, limit=args.limit,
                                bench_runs=0, progress=not args.quiet, peers=peers)
        result["seconds"] = round(time.perf_counter() - start, 1)
        result["data"] = os.path.relpath(result["data"], ROOT)  # the docs name ../shared, not this machine's path
        results.append(result)
        print(markdown(result), flush=True)
    table = combined_markdown(results)
    write_atomic(out / "accuracy_table.md", table, force=True)
    write_atomic(out / "accuracy_table.json", json.dumps(results, indent=2) + "\n", force=True)
    print(f"wrote {out / 'accuracy_table.md'} and accuracy_table.json")
    if args.update_docs:
        update_table(ROOT / "docs" / "accuracy.md", table)
        print("updated docs/accuracy.md")


PEER = ROOT / "tools" / "litert_quantizer_peer.py"


def litert_quantizer_peers(python: str) -> list:
    """(label, quantize) peers for :func:`run_report`: litert-quantizer's a8w8 and OCTAV,
    run by ``python`` (its own venv) on the float .tflite and the calibration images."""
    import subprocess

    import numpy as np

    from edgemobile.quantization.tflite_converter import convert_keras

    version = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.version('litert-quantizer'))"],
                             capture_output=True, text=True, check=True).stdout.strip()
    floats: dict[str, bytes] = {}  # the float .tflite without metadata (the quantizer mangles ours)

    def peer(method: str):
        def quantize(variant, weights, images) -> bytes:
            if variant.name not in floats:
                floats.clear()
                floats[variant.name] = convert_keras(variant.build(weights), "float32")
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                (tmp / "float.tflite").write_bytes(floats[variant.name])
                np.save(tmp / "calib.npy", images)
                done = subprocess.run([python, str(PEER), str(tmp / "float.tflite"), str(tmp / "calib.npy"), method,
                                       str(tmp / "int8.tflite")], capture_output=True, text=True)
                if done.returncode != 0:  # e.g. OCTAV on MobileNetV3's in-graph Rescaling: a row with the error
                    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
                    raise EdgeMobileError((lines[-1] if lines else f"exit {done.returncode}")[:300])
                return (tmp / "int8.tflite").read_bytes()
        return quantize

    return [(f"litert-quantizer {version} a8w8 (min/max)", peer("a8w8")),
            (f"litert-quantizer {version} OCTAV", peer("octav"))]


def combined_markdown(results: list[dict]) -> str:
    """One table for every family (rows grouped by model), then the shared notes."""
    lines, notes = [], ""
    for n, result in enumerate(results):
        text, _, notes = markdown(result).partition("\n\n")
        rows = text.splitlines()
        lines += rows if n == 0 else rows[2:]
    return "\n".join(lines) + "\n\n" + notes


def update_table(path: Path, table: str) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"accuracy_table: {path} has no {BEGIN} ... {END} markers")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    write_atomic(path, f"{head}{BEGIN}\n{table.rstrip()}\n{END}{tail}", force=True)


if __name__ == "__main__":
    main()
