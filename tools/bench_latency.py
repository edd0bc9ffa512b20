"""Float vs full-int8 latency of zoo models in LiteRT, side by side, with an optional per-op
profile.

    python tools/bench_latency.py [MODEL[:ALPHA] ...] [--threads 1] [--runs 100]
                                  [--calib DIR] [--stock] [--user-v3 [--carry]] [--profile] [--save DIR]

Default models: mobilenet_v3_large, mobilenet_v3_small and mobilenet_v1 (1.0/224) for
contrast. Each model is built with random weights and non-trivial BatchNorm statistics
(latency does not depend on the values), converted to float32 and to int8 (calibrated on
--calib images through the model's preprocessing spec, or on synthetic pixels), and both
.tflite models are timed in one loop — float, int8, float, int8, … after a warm-up — so
machine noise hits them alike. The table gives median ms, and int8/float.

--stock adds the unmodified keras.applications graph of MobileNetV3 models (what edgemobile
converted before its int8-friendly graph) as extra rows.

--user-v3 adds a user's model: keras.applications.MobileNetV3Small(include_top=False) +
GlobalAveragePooling2D / Dropout / Dense(5, softmax), as the user saved it and as `convert`
rewrites it (edgemobile.networks.rewrite), float and int8 of each in the same loop; --carry
adds the rewrite with the backbone's 1/6 carried as a MUL after the pooling or on the 7x7
features instead of folded into the Dense (the choice the rewrite makes, measured).
``python tools/bench_latency.py none --user-v3 --carry`` times only those.

--profile prints a per-op profile of every model (edgemobile.deploy.bench.profile_ops: each
op cut out into a one-op model, fed the values it sees in a real run, timed alone with XNNPACK
applied as by default): "xnnpack" marks ops XNNPACK takes, "builtin" ops that fall back to
TFLite's own kernels. The sum of the per-op times approximates the whole model's (it leaves
out fusion across ops and partition overheads).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edgemobile.networks.zoo import resolve  # noqa: E402

DEFAULT_MODELS = ("mobilenet_v3_large", "mobilenet_v3_small", "mobilenet_v1")


# -- conversion: the one place this tool converts -------------------------------------------------


def convert(model, precision: str, representative=None) -> bytes:
    """Keras → TFLite through the project's converter (int8 with exact calibration ranges)."""
    from edgemobile.quantization.tflite_converter import convert_keras

    with contextlib.redirect_stdout(io.StringIO()):  # the converter prints the SavedModel signature
        return convert_keras(model, precision, representative)


def randomize(model, seed: int = 0):
    """Random weights are fine for timing; give BatchNorm non-trivial statistics."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                               rng.normal(0, 0.2, n), rng.uniform(0.5, 2.0, n)])
    return model


def representative(variant, calib: Path | None, num: int):
    if calib is not None:
        from edgemobile.quantization.convert import CalibrationSet
        from edgemobile.quantization.pipeline import load_images

        images = load_images(CalibrationSet.from_folder(calib, num).paths, variant.preprocess, progress=False)
        return lambda: ([x[None]] for x in images)
    spec = variant.preprocess
    size = variant.resolution

    def synthetic():
        rng = np.random.default_rng(0)
        for _ in range(num):  # smooth random "images": low-frequency noise, upsampled
            small = rng.uniform(0, 255, (size // 16, size // 16, 3))
            pixels = np.kron(small, np.ones((16, 16, 1))) + rng.normal(0, 8, (size, size, 3))
            yield [spec.normalize(np.clip(pixels, 0, 255).astype(np.uint8))[None]]

    return synthetic


def build_models(name: str, args) -> list[tuple[str, bytes, bytes]]:
    """[(row label, float tflite, int8 tflite)] for one requested model."""
    alpha = None
    if ":" in name:
        name, text = name.split(":", 1)
        alpha = float(text)
    variant = resolve(name, alpha)
    model = randomize(variant.build("none"))
    rep = representative(variant, args.calib, args.num_calib)
    rows = [(variant.name, convert(model, "float32"), convert(model, "int8", rep))]
    if args.stock and variant.family.startswith("mobilenet_v3"):
        from edgemobile.networks.mobilenet_v3 import build_stock, copy_weights

        stock = build_stock(variant, None)
        copy_weights(model, stock)
        with contextlib.redirect_stdout(io.StringIO()):
            from edgemobile.quantization.tflite_converter import convert_keras

            stock_int8 = convert_keras(stock, "int8", rep)  # the plain converter, as before
        rows.append((f"{variant.name} (keras graph)", convert(stock, "float32"), stock_int8))
    return rows


# The 1/6 of the backbone's 6·hard_swish output, carried to (the rewrite folds it into the head's Dense):
CARRY = {
    "folded into Dense": None,
    "MUL after pooling": {"_LINEAR": ()},  # a constant multiply on the pooled 1x576 vector
    "MUL on 7x7 features": {"_LINEAR": (), "_COMMUTING": ()},  # right at the backbone output
}


def user_v3_models(args) -> list[tuple[str, bytes, bytes]]:
    """A user's MobileNetV3-Small (keras.applications, include_top=False, + GlobalAveragePooling2D
    / Dropout / Dense(5, softmax)), random weights: rows for the model as the user saved it and
    as edgemobile rewrites it (edgemobile.networks.rewrite), float and int8 of each; with
    --carry also the rewrite with the 1/6 carried elsewhere."""
    import keras

    from edgemobile.networks import rewrite as rw

    variant = resolve("mobilenet_v3_small")
    base = keras.applications.MobileNetV3Small(input_shape=(224, 224, 3), include_top=False, weights=None)
    head = keras.layers.Dense(5, activation="softmax", name="head")
    user = keras.Model(base.input, head(keras.layers.Dropout(0.2)(keras.layers.GlobalAveragePooling2D()(base.output))))
    randomize(base)
    rep = representative(variant, args.calib, args.num_calib)
    images = np.concatenate([batch[0] for batch in rep()])
    rows = [("user V3-Small, as saved", convert(user, "float32"), convert(user, "int8", rep))]
    for label, patch in CARRY.items() if args.carry else [("folded into Dense", None)]:
        saved = {k: getattr(rw, k) for k in patch or {}}
        try:
            for k, v in (patch or {}).items():
                setattr(rw, k, v)
            rewritten, done = rw.int8_rewrite(user, images)
        finally:
            for k, v in saved.items():
                setattr(rw, k, v)
        if not done.applied:
            raise SystemExit(f"rewrite not applied: {done.message()}")
        suffix = "" if patch is None else f", 1/6 as {label}"
        rows.append((f"user V3-Small, rewritten{suffix}", convert(rewritten, "float32"),
                     convert(rewritten, "int8", rep)))
    return rows


# -- timing ---------------------------------------------------------------------------------------


def interpreter(tflite: bytes, threads: int, xnnpack: bool = True):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {} if xnnpack else {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    it = Interpreter(model_content=tflite, num_threads=threads, **kwargs)
    it.allocate_tensors()
    detail = it.get_input_details()[0]
    rng = np.random.default_rng(1)
    if np.issubdtype(detail["dtype"], np.integer):
        x = rng.integers(-128, 128, detail["shape"]).astype(detail["dtype"])
    else:
        x = rng.uniform(0, 255, detail["shape"]).astype(detail["dtype"])
    it.set_tensor(detail["index"], x)
    return it


def time_interleaved(interpreters: dict, runs: int, warmup: int) -> dict[str, float]:
    """Median ms per model, all models invoked in turn each round."""
    for it in interpreters.values():
        for _ in range(warmup):
            it.invoke()
    times = {key: [] for key in interpreters}
    for _ in range(runs):
        for key, it in interpreters.items():
            start = time.perf_counter()
            it.invoke()
            times[key].append((time.perf_counter() - start) * 1e3)
    return {key: statistics.median(values) for key, values in times.items()}


# -- per-op profile -------------------------------------------------------------------------------


def profile(tflite: bytes, threads: int, runs: int) -> list[dict]:
    """The project's single-op profiler (:func:`edgemobile.deploy.bench.profile_ops`)."""
    from edgemobile.deploy.bench import profile_ops

    return profile_ops(tflite, threads=threads, xnnpack=True, runs=runs, progress=False)


def print_profile(label: str, rows: list[dict], top: int) -> None:
    measured = [r for r in rows if r["median_ms"] is not None]
    total = sum(r["median_ms"] for r in measured)
    print(f"\n  {label}: {len(rows)} ops, sum of single-op times {total:.3f} ms")
    groups = defaultdict(lambda: [0, 0.0])
    for r in measured:
        g = groups[(r["op"], r["kernel"])]
        g[0] += 1
        g[1] += r["median_ms"]
    for (op, kernel), (count, ms) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
        print(f"    {op:<20} {kernel:<8} x{count:<4} {ms:8.3f} ms  {100 * ms / total:5.1f} %")
    for r in rows:
        if r["median_ms"] is None:
            print(f"    #{r['index']} {r['op']}: {r['note']}")
    if top:
        print(f"    slowest {top} ops:")
        for r in sorted(measured, key=lambda r: -r["median_ms"])[:top]:
            desc = f"{r['op']} -> {r['output_shape']}"
            print(f"      #{r['index']:<4} {desc:<44} {r['kernel']:<8} {r['median_ms'] * 1e3:8.1f} us")


# -- main -----------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(DEFAULT_MODELS), help="zoo names, optionally NAME:ALPHA")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=100, help="timed rounds (default 100)")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--calib", type=Path, help="calibration image folder (default: synthetic images)")
    parser.add_argument("--num-calib", type=int, default=16, help="calibration images (default 16)")
    parser.add_argument("--stock", action="store_true", help="also time the keras.applications graph of V3 models")
    parser.add_argument("--user-v3", action="store_true", help="also a user's keras.applications MobileNetV3-Small "
                        "+ new head, as saved and as edgemobile rewrites it (networks/rewrite.py)")
    parser.add_argument("--carry", action="store_true", help="with --user-v3: also the rewrite with the backbone's "
                        "1/6 as a MUL after pooling and on the 7x7 features instead of folded into the Dense")
    parser.add_argument("--profile", action="store_true", help="per-op profile of every model")
    parser.add_argument("--top", type=int, default=8, help="slowest ops listed per profile (default 8)")
    parser.add_argument("--save", type=Path, help="write the .tflite files to this folder")
    args = parser.parse_args(argv)

    rows = []
    for name in args.models if args.models != ["none"] else []:
        print(f"converting {name} ...", file=sys.stderr, flush=True)
        rows.extend(build_models(name, args))
    if args.user_v3:
        print("converting a user's MobileNetV3-Small ...", file=sys.stderr, flush=True)
        rows.extend(user_v3_models(args))
    if args.save:
        args.save.mkdir(parents=True, exist_ok=True)
        for label, f32, i8 in rows:
            label = label.replace(" (keras graph)", "_keras_graph")
            stem = "".join(c if c.isalnum() or c in "._-" else "_" for c in label)
            (args.save / f"{stem}_float32.tflite").write_bytes(f32)
            (args.save / f"{stem}_int8.tflite").write_bytes(i8)

    interpreters = {}
    for label, f32, i8 in rows:
        interpreters[(label, "float32")] = interpreter(f32, args.threads)
        interpreters[(label, "int8")] = interpreter(i8, args.threads)
    print(f"timing {len(interpreters)} models, {args.runs} interleaved rounds, {args.threads} thread(s) ...",
          file=sys.stderr, flush=True)
    ms = time_interleaved(interpreters, args.runs, args.warmup)

    width = max(len(label) for label, _, _ in rows)
    print(f"\nLiteRT, XNNPACK, {args.threads} thread(s), median of {args.runs} interleaved runs")
    print(f"{'model':<{width}}  {'float ms':>9}  {'int8 ms':>8}  {'int8/float':>10}")
    for label, _, _ in rows:
        f, q = ms[(label, "float32")], ms[(label, "int8")]
        print(f"{label:<{width}}  {f:9.3f}  {q:8.3f}  {q / f:10.2f}")
    saved = ms.get(("user V3-Small, as saved", "int8"))
    for label, _, _ in rows:
        if saved and label.startswith("user V3-Small, rewritten"):
            print(f"int8 {label}: {saved / ms[(label, 'int8')]:.2f}x faster than as saved")

    if args.profile:
        for label, f32, i8 in rows:
            print(f"\n== {label}")
            print_profile("float32", profile(f32, args.threads, 30), args.top)
            print_profile("int8", profile(i8, args.threads, 30), args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
