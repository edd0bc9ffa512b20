"""Regenerate the int8 tables of docs/accuracy.md on real data: the ablation, or the QAT anchor.

    python tools/accuracy_table.py [--shared ../shared] [--num-calibration 500]
                                   [--models a25,a50,a75,v3s,s0] [--out DIR] [--update-docs]
    python tools/accuracy_table.py --qat-anchor [--models a25_128,a50,a75,v3s] [--finetune-epochs N]
                                   [--qat-input normalized|raw] [--shared ../shared] [--num-calibration 500]
                                   [--out DIR] [--update-docs]

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

QAT anchor (``--qat-anchor``, instead of the ablation): for each model whose float weights in
the shared folder are the float shadow of one of Google's quantization-aware-trained uint8
models (MobileNetV1 α0.25/128, α0.5/160, α0.75/192, MobileNetV3-Small), three models on
``imagenet/val``: the float32 conversion of the shadow (the reference), Google's QAT uint8
.tflite (1001 classes, background dropped; fed raw pixels, as a device feeds it and as eval
feeds ours — ``--qat-input normalized``: pixels mapped to [-1, 1] with mean 127.5 and std
127.5, then quantized to its input grid) and ours, ``convert --uint8 --finetune`` (the default recipe plus fine-tuning, its
default epochs unless ``--finetune-epochs``) from the same shadow and calibration images. Per
model: top-1 of each, each int8 model's top-1 agreement with the float reference (eval's
figures and 95 % intervals), and whether ours agrees more than Google's: the paired difference
of the two agreements with its interval and the exact McNemar test on the images only one of
them agrees on. Writes ``qat_anchor.md``/``.json`` to ``--out``; ``--update-docs`` replaces
the table between ``<!-- qat-anchor:begin -->`` / ``<!-- qat-anchor:end -->`` in
docs/accuracy.md. Heavy too (each fine-tuned conversion takes minutes on 2 cores).
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

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgemobile.data.datasets import labeled_images, limit_pairs  # noqa: E402
from edgemobile.errors import EdgeMobileError  # noqa: E402
from edgemobile.eval.evaluate import (  # noqa: E402
    Accuracy,
    compare,
    format_interval,
    format_p,
    run_predictors,
    top_k_indices,
)
from edgemobile.eval.predictors import PreprocessOverrides, TFLitePredictor  # noqa: E402
from edgemobile.eval.report import ModelSpec, convert_model, markdown, run_report  # noqa: E402
from edgemobile.networks.request import ModelRequest  # noqa: E402
from edgemobile.outputs import write_atomic  # noqa: E402
from edgemobile.quantization.convert import CalibrationSet, convert_variant  # noqa: E402
from edgemobile.quantization.techniques.recipe import recipe_from  # noqa: E402
from edgemobile.runtime.delegation import host_cpu  # noqa: E402

BEGIN, END = "<!-- accuracy-table:begin -->", "<!-- accuracy-table:end -->"
ANCHOR_BEGIN, ANCHOR_END = "<!-- qat-anchor:begin -->", "<!-- qat-anchor:end -->"

# key: (zoo name, alpha, resolution, weights file under shared/weights, label, weights provenance)
MODELS = {
    "a25": ("mobilenet_v1", 0.25, 224, "mobilenet_v1/mobilenet_2_5_224_tf.h5", "MobileNetV1 0.25/224", "original"),
    "a25_128": ("mobilenet_v1", 0.25, 128, "mobilenet_v1/mobilenet_2_5_128_tf.h5", "MobileNetV1 0.25/128",
                "QAT-derived"),
    "a50": ("mobilenet_v1", 0.5, 160, "mobilenet_v1/mobilenet_5_0_160_tf.h5", "MobileNetV1 0.5/160", "QAT-derived"),
    "a75": ("mobilenet_v1", 0.75, 192, "mobilenet_v1/mobilenet_7_5_192_tf.h5", "MobileNetV1 0.75/192", "QAT-derived"),
    "v3s": ("mobilenet_v3_small", 1.0, 224, "mobilenet_v3/weights_mobilenet_v3_small_224_1.0_float.h5",
            "MobileNetV3-Small 1.0/224", "QAT-derived"),
    "s0": ("mobileone_s0", None, 224, "mobileone/mobileone_s0.pth.tar", "MobileOne-S0", "original, fused"),
}
ABLATION_MODELS = ("a25", "a50", "a75", "v3s", "s0")
# key (of MODELS, whose weights are this model's float shadow): Google's QAT uint8 .tflite under shared/weights
QAT_MODELS = {
    "a25_128": "mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite",
    "a50": "mobilenet_v1/mobilenet_v1_0.5_160_quant.tflite",
    "a75": "mobilenet_v1/mobilenet_v1_0.75_192_quant.tflite",
    "v3s": "mobilenet_v3/v3-small_224_1.0_uint8.tflite",
}
# How Google's QAT models (no edgemobile metadata) are fed, set for them only (the float
# reference keeps its own preprocessing, 0..255 for MobileNetV3): "normalized", uint8 pixels
# mapped to [-1, 1] (mean 127.5, std 127.5) and quantized to the model's input grid; "raw", raw
# pixels straight into that grid as a device feeds them (scale 1/128 or 1/127, zero point 128:
# half a step off [-1, 1]) — what edgemobile's own uint8 models get either way.
QAT_INPUTS = {"normalized": PreprocessOverrides(mean=(127.5,), std=(127.5,)), "raw": None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"), help="shared data folder (default ../shared)")
    parser.add_argument("--num-calibration", type=int, default=500, help="calibration images (default 500)")
    parser.add_argument("--models", help=f"comma-separated keys from {', '.join(MODELS)} (default: "
                        f"{','.join(ABLATION_MODELS)}; with --qat-anchor {','.join(QAT_MODELS)}, the keys it takes)")
    parser.add_argument("--limit", type=int, help="evaluate only N val images (quick look)")
    parser.add_argument("--out", help="folder for the .md/.json tables (default: a new temp folder)")
    parser.add_argument("--update-docs", action="store_true", help="rewrite the table in docs/accuracy.md")
    parser.add_argument("--litert-python", help="python of a venv with litert-quantizer: add its rows (a8w8, OCTAV)")
    parser.add_argument("--qat-anchor", action="store_true",
                        help="instead of the ablation: Google's QAT uint8 models against ours (--uint8 --finetune), "
                             "both against the float model")
    parser.add_argument("--finetune-epochs", type=int,
                        help="with --qat-anchor: fine-tuning epochs of ours (default: the technique's default)")
    parser.add_argument("--qat-input", choices=list(QAT_INPUTS),
                        help="with --qat-anchor: Google's models fed (pixel - 127.5) / 127.5 quantized to their input "
                             "grid (normalized) or raw pixels through it, as a device feeds them (raw, the default: as eval feeds ours)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    if not args.qat_anchor and (args.finetune_epochs is not None or args.qat_input is not None):
        parser.error("--finetune-epochs and --qat-input only apply to --qat-anchor")
    if args.qat_anchor and args.litert_python:
        parser.error("--litert-python adds rows to the ablation, not to --qat-anchor")

    shared = Path(args.shared)
    if not (shared / "imagenet" / "val").is_dir():
        sys.exit(f"accuracy_table: {shared}/imagenet/val not found (pass --shared)")
    choices = QAT_MODELS if args.qat_anchor else MODELS
    keys = [k.strip() for k in (args.models or ",".join(QAT_MODELS if args.qat_anchor else ABLATION_MODELS)).split(",")
            if k.strip()]
    unknown = [k for k in keys if k not in choices]
    if unknown:
        sys.exit(f"accuracy_table: unknown model keys {unknown}{' for --qat-anchor' if args.qat_anchor else ''}; "
                 f"choose from {', '.join(choices)}")
    out = Path(args.out or tempfile.mkdtemp(prefix="accuracy_table_"))
    out.mkdir(parents=True, exist_ok=True)
    calibration = CalibrationSet.from_folder(shared / "imagenet" / "calib", args.num_calibration, 0,
                                             source="shared/imagenet/calib (stratified, seed 0)")
    if args.qat_anchor:
        results = []
        for key in keys:
            result = qat_anchor(key, shared, calibration, args.finetune_epochs, args.qat_input or "raw",
                                args.limit, progress=not args.quiet)
            print(anchor_markdown([result]), flush=True)
            results.append(result)
        name, table, markers = "qat_anchor", anchor_markdown(results), (ANCHOR_BEGIN, ANCHOR_END)
    else:
        peers = litert_quantizer_peers(args.litert_python) if args.litert_python else ()
        results = []
        for key in keys:
            zoo, alpha, resolution, weights, label, provenance = MODELS[key]
            spec = ModelSpec(ModelRequest(zoo, alpha, resolution, str(shared / "weights" / weights)),
                             f"{label} ({provenance})")
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):  # Keras' exporter prints every traced tensor
                result = run_report([spec], shared / "imagenet" / "val", calibration, ablation=True, limit=args.limit,
                                    bench_runs=0, progress=not args.quiet, peers=peers)
            result["seconds"] = round(time.perf_counter() - start, 1)
            result["data"] = os.path.relpath(result["data"], ROOT)  # the docs name ../shared, not this machine's path
            results.append(result)
            print(markdown(result), flush=True)
        name, table, markers = "accuracy_table", combined_markdown(results), (BEGIN, END)
    write_atomic(out / f"{name}.md", table, force=True)
    write_atomic(out / f"{name}.json", json.dumps(results, indent=2) + "\n", force=True)
    print(f"wrote {out / f'{name}.md'} and {name}.json")
    if args.update_docs:
        update_table(ROOT / "docs" / "accuracy.md", table, *markers)
        print("updated docs/accuracy.md")


# -- the QAT anchor ------------------------------------------------------------------------
def qat_anchor(key: str, shared: Path, calibration, epochs: int | None = None, qat_input: str = "raw",
               limit: int | None = None, progress: bool = True) -> dict:
    """One model of ``--qat-anchor``: the float32 conversion of the shadow weights, Google's QAT
    uint8 model (fed as ``qat_input`` says, see :data:`QAT_INPUTS`) and ours (``convert --uint8
    --finetune``, ``epochs`` of fine-tuning or the technique's default), evaluated on the same
    images in one pass;
    each int8 model with ``eval --json``'s figures against the float one (``model``,
    ``reference``, ``comparison``: ``comparison.top1_agreement``, ``…_ci95``), and
    ``ours_vs_google``: the two agreements compared image by image."""
    zoo, alpha, resolution, weights, label, _ = MODELS[key]
    spec = ModelSpec(ModelRequest(zoo, alpha, resolution, str(shared / "weights" / weights)), label)
    variant, weights_path = spec.resolved()
    flags = "--uint8 --finetune" + (f" --finetune-epochs {epochs}" if epochs is not None else "")
    recipe = recipe_from({"finetune": True, **({"finetune_epochs": epochs} if epochs is not None else {})})
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # Keras' exporter prints every traced tensor
        float_tflite = convert_model(spec, progress=progress).tflite
        ours = convert_variant(variant, "uint8", weights_path, calibration, progress=progress, techniques=recipe)
    google = shared / "weights" / QAT_MODELS[key]
    predictors = [TFLitePredictor(float_tflite, name=f"{variant.name}_float32.tflite (in memory)"),
                  TFLitePredictor(google, QAT_INPUTS[qat_input]),
                  TFLitePredictor(ours.tflite, name=f"{variant.name}_uint8.tflite (in memory, fine-tuned)")]
    data = shared / "imagenet" / "val"
    pairs = limit_pairs(labeled_images(data, predictors[0].classes), data, limit, 0)
    labels = np.array([y for _, y in pairs])
    probs = run_predictors(predictors, [p for p, _ in pairs], progress=progress, desc=f"evaluating {label}")
    float_figures, google_figures, our_figures = (Accuracy.measure(p.name, pr, labels, p.describe()).as_dict()
                                                  for p, pr in zip(predictors, probs))

    def against_float(figures: dict, model_probs) -> dict:
        return {"model": figures, "reference": float_figures,
                "comparison": compare(model_probs, probs[0], labels).as_dict()}

    paired = paired_agreements(probs[2], probs[1], probs[0])
    return {
        "model": label, "key": key, "zoo": variant.name, "weights": os.path.relpath(weights_path, ROOT),
        "data": os.path.relpath(data, ROOT), "images": len(pairs), "calibration": calibration.describe(),
        "float": float_figures,
        "google_qat": {"file": os.path.relpath(google, ROOT), "input": qat_input,
                       **against_float(google_figures, probs[1])},
        "ours": {"convert": flags, "recipe": recipe.label(), "conversion_seconds": round(ours.seconds, 1),
                 "finetune": (ours.provenance.get("quantization") or {}).get("finetune"),
                 **against_float(our_figures, probs[2])},
        "ours_vs_google": {"agreement_delta": paired.top1_delta, "agreement_delta_ci95": paired.top1_delta_ci95,
                           "mcnemar_p": paired.mcnemar_p, "only_ours_agree": paired.top1_only_model,
                           "only_google_agrees": paired.top1_only_reference,
                           "ours_agrees_more": agrees_more(paired.top1_delta, paired.mcnemar_p)},
        "seconds": round(time.perf_counter() - start, 1), "machine": host_cpu().describe(),
    }


def paired_agreements(model_probs, other_probs, reference_probs):
    """``model`` against ``other`` on their top-1 agreement with ``reference``, image by image:
    :func:`compare` with the reference's top-1 as the labels, so its ``top1_delta`` is model's −
    other's agreement (points) with eval's paired interval and exact McNemar test, and
    ``top1_only_model`` / ``top1_only_reference`` count the images only model / only other agrees on."""
    return compare(model_probs, other_probs, top_k_indices(reference_probs, 1)[:, 0])


QAT_INPUT_NOTE = {"normalized": "(pixel - 127.5) / 127.5 quantized to their input grid",
                  "raw": "raw pixels through their input grid, as a device feeds them"}


def agrees_more(delta: float, p: float) -> str:
    """The verdict on ours − Google's agreement (points) and its McNemar p: "yes", "no" (Google's
    agrees more) or "not significantly" (p ≥ 0.05: within these images' noise, either way)."""
    if p >= 0.05 or delta == 0:
        return "not significantly"
    return "yes" if delta > 0 else "no"


def _with_ci(value: float, interval, signed: bool = False) -> str:
    return f"{value:{'+' if signed else ''}.2f} {format_interval(interval, signed)}"


def anchor_markdown(results: list[dict]) -> str:
    """The ``--qat-anchor`` table: per model float top-1, Google's and our top-1 and agreement
    with float (95 % intervals), ours − Google's agreement, and the verdict; then the notes."""
    header = ["model", "float top-1", "Google QAT top-1", "Google QAT agreement %", "ours top-1", "ours agreement %",
              "ours − Google agreement (pt)", "McNemar p", "ours agrees more"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    tuned = []
    for r in results:
        google, ours, paired = r["google_qat"], r["ours"], r["ours_vs_google"]
        lines.append("| " + " | ".join([
            r["model"], _with_ci(r["float"]["top1"], r["float"]["top1_ci95"]),
            _with_ci(google["model"]["top1"], google["model"]["top1_ci95"]),
            _with_ci(google["comparison"]["top1_agreement"], google["comparison"]["top1_agreement_ci95"]),
            _with_ci(ours["model"]["top1"], ours["model"]["top1_ci95"]),
            _with_ci(ours["comparison"]["top1_agreement"], ours["comparison"]["top1_agreement_ci95"]),
            _with_ci(paired["agreement_delta"], paired["agreement_delta_ci95"], signed=True),
            format_p(paired["mcnemar_p"]), paired["ours_agrees_more"]]) + " |")
        done = ours.get("finetune") or {}
        if done:
            tuned.append(f"- {r['model']}: fine-tuning kept epoch {done.get('best_epoch')} of {done.get('epochs')} "
                         f"(held-apart agreement with float {100 * done['held_apart_agreement_before']:.1f} → "
                         f"{100 * done['held_apart_agreement_after']:.1f} % on {done.get('held_apart_images')} "
                         f"calibration images), {done.get('seconds')} s of a {ours['conversion_seconds']:.0f} s "
                         "conversion")
    first = results[0]
    notes = (f"{first['images']} images from {first['data']}; calibration: {first['calibration']['images']} images "
             f"from {first['calibration']['source']}; ours: `convert {first['ours']['convert']}` "
             f"({first['ours']['recipe']}) from the same float weights, fed {first['ours']['model']['input_feeding']}; "
             f"Google's QAT models fed {QAT_INPUT_NOTE[first['google_qat']['input']]}; "
             "agreement: images whose top-1 equals the float32 model's; "
             "[low, high]: 95 % intervals (Wilson; ours − Google: Newcombe's for paired data); McNemar p: exact test "
             "on the images only one of the two agrees on, p >= 0.05: not significant; conversion times on "
             f"{first['machine']}.")
    return "\n".join(lines) + "\n\n" + notes + "\n" + ("\n" + "\n".join(tuned) + "\n" if tuned else "")


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


def update_table(path: Path, table: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace what stands between the ``begin`` and ``end`` markers of ``path`` with ``table``."""
    text = path.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"accuracy_table: {path} has no {begin} ... {end} markers")
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    write_atomic(path, f"{head}{begin}\n{table.rstrip()}\n{end}{tail}", force=True)


if __name__ == "__main__":
    main()
