"""Fuzz edgemobile's readers through its command line: every mutated input must end in success
or in one ``edgemobile: error:`` line — no traceback, no crash signal, no hang, no half-written
output file.

    nice -n 10 python tools/fuzz.py --cases 5000 [--kinds tflite_meta jpeg …] [--seed 0] [--keep-failures DIR]

Kinds (each a seed file, mutated ``--cases`` times, fed to one CLI command):

- ``tflite_meta``: a uint8 .tflite with edgemobile metadata (Google's QAT MobileNetV1 0.25/128
  with metadata embedded here) → ``predict`` / ``eval`` / ``info``
- ``metadata_json``: the ``edgemobile.json`` document packed in that model (read back by every
  command that loads it) → ``predict`` / ``eval`` / ``info``
- ``tflite_third_party``: the same model without metadata → ``predict`` / ``eval`` / ``info``
- ``jpeg``, ``png``: an ImageNet image → ``predict`` / ``eval --skip-bad-images``
- ``labels``: a 1001-line label file → ``predict --labels``
- ``ground_truth``: a caffe-style ``name index`` file → ``eval --ground-truth``
- ``manifest``: a local calibration manifest → ``python -m edgemobile.cli.calibration fetch``
- ``tofu``: the trust-on-first-use record a hosted calibration set reads back on every run

A parent process imports edgemobile once and forks children that run the CLI's own
``main(argv)`` case after case (up to 200 each), stdout/stderr captured per case at the file
descriptors (the ~1 s of imports a fresh interpreter costs would otherwise dominate): a case
that raises anything but SystemExit prints its traceback, and a case that kills its child —
a crash in the C++ interpreter, or a hang past ``timeout`` — is seen by ``waitpid``, recorded,
and a new child resumes after it.
Mutations are seeded: ``(--seed, kind, case)`` reproduces one exactly. The models and images
come from ``../shared`` (or ``EDGEMOBILE_SHARED``); kinds needing them are skipped without it.
tests/e2e/test_fuzz.py runs a few hundred cases per kind of the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODEL = "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite"
OUTCOMES = ("ok", "clean error", "other")
_ERROR_LINE = re.compile(r"^edgemobile: error: \S")


def shared_path() -> Path:
    return Path(os.environ.get("EDGEMOBILE_SHARED", ROOT.parent / "shared"))


# -- mutations ------------------------------------------------------------------------------
def mutate(data: bytes, rng: random.Random, hot: list[tuple[int, int]] | None = None) -> bytes:
    """1–4 random byte-level edits of ``data``. ``hot`` spans (start, end) are where half of
    the edits land (a model's flatbuffer tables rather than its megabyte of weights)."""
    buf = bytearray(data)

    def position() -> int:
        if hot and rng.random() < 0.5:
            start, end = rng.choice(hot)
            return rng.randrange(start, max(start + 1, end))
        return rng.randrange(max(1, len(buf)))

    for _ in range(rng.randint(1, 4)):
        if not buf:
            buf += bytes([rng.randrange(256)])
            continue
        op = rng.choices(range(8), weights=(25, 20, 15, 5, 10, 10, 5, 10))[0]
        at = min(position(), len(buf) - 1)
        if op == 0:  # flip bits
            buf[at] ^= 1 << rng.randrange(8)
        elif op == 1:  # random bytes
            n = rng.randint(1, 8)
            buf[at:at + n] = bytes(rng.randrange(256) for _ in range(n))
        elif op == 2:  # an interesting value
            value = rng.choice([b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                                b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80"])
            buf[at:at + len(value)] = value
        elif op == 3:  # truncate
            del buf[rng.randrange(len(buf)):]
        elif op == 4:  # delete a run
            del buf[at:at + rng.randint(1, 64)]
        elif op == 5:  # insert random bytes
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 6:  # duplicate a chunk
            chunk = buf[at:at + rng.randint(1, 256)]
            buf[rng.randrange(len(buf)):0] = chunk
        else:  # invalid UTF-8 / control characters (names, text files)
            buf[at:at] = rng.choice([b"\xc3\x28", b"\xff\xfe", b"\x00", b"\r", b"\n\n", b"\xe2\x82", b"\t", b"\x1b"])
    return bytes(buf)


def mutate_json(data: bytes, rng: random.Random) -> bytes:
    """A structural edit of a JSON document (a value replaced, dropped or retyped), or a byte edit."""
    try:
        doc = json.loads(data)
    except ValueError:
        return mutate(data, rng)
    if rng.random() < 0.4:
        return mutate(data, rng)
    paths: list[tuple] = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + (k,))
        elif isinstance(node, list):
            for i, v in enumerate(node[:20]):
                walk(v, path + (i,))

    walk(doc, ())
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths[1:] or paths)
        parent = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if not path:
                doc = rng.choice([None, [], 0, "x"])
                break
            key = path[-1]
            if rng.random() < 0.3:
                del parent[key]
            else:
                parent[key] = rng.choice([None, True, -1, 0, 2**63, 1e308, "", "../../etc/passwd", "\u0000", [],
                                          {}, [None], "x" * 300, "nan", 3.5, "/abs/path"])
        except (KeyError, IndexError, TypeError):
            continue
    return json.dumps(doc).encode()


# -- running one case -------------------------------------------------------------------------
@dataclasses.dataclass
class Outcome:
    kind: str
    case: int
    outcome: str  # "ok", "clean error" or "other"
    detail: str
    argv: list[str]


def run_forked(entry: Callable[[list[str]], int], argv: list[str], workdir: Path, timeout: int = 60) -> tuple[int | None, int | None, str, str]:
    """Run ``entry(argv)`` in a forked child: (exit code, signal, stdout, stderr)."""
    out_path, err_path = workdir / ".stdout", workdir / ".stderr"
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            import faulthandler

            faulthandler.disable()  # a crash is reported by its signal, not a dump (pytest enables it)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            code, _ = _run_here(entry, argv, workdir, timeout)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    stdout = out_path.read_text(errors="replace") if out_path.exists() else ""
    stderr = err_path.read_text(errors="replace") if err_path.exists() else ""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status), stdout, stderr
    return os.WEXITSTATUS(status), None, stdout, stderr


def classify(code: int | None, sig: int | None, stderr: str, outputs: Path) -> tuple[str, str]:
    """("ok" | "clean error" | "other", detail)."""
    leftovers = sorted(p.name for p in outputs.iterdir()) if outputs.is_dir() else []
    for name in leftovers:
        path = outputs / name
        if name.startswith(".") or name.endswith((".tmp", ".part")):
            return "other", f"left a temp file {name}"
        if name.endswith(".json"):
            try:
                json.loads(path.read_text())
            except ValueError:
                return "other", f"half-written {name}"
    if sig is not None:
        name = signal.Signals(sig).name
        return "other", f"killed by {name}" + (" (timeout)" if sig == signal.SIGALRM else "")
    if "Traceback (most recent call last)" in stderr:
        return "other", "traceback: " + stderr.strip().splitlines()[-1][:200]
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    if code == 0 and not errors:
        return "ok", ""
    if code == 2 and len(errors) == 1 and lines and lines[-1] == errors[0]:
        if leftovers:
            return "other", f"failed but wrote {leftovers}"
        return "clean error", errors[0][:200]
    return "other", f"exit {code}, stderr: {' | '.join(lines[-3:])[:300]}"


# -- the corpus -------------------------------------------------------------------------------
@dataclasses.dataclass
class Kind:
    name: str
    filename: str
    seed: bytes
    argv: Callable[[Path, Path, int], list[str]]  # (mutated file, output folder, case) → argv
    entry: str = "cli"  # "cli" (edgemobile main) or "calibration" (edgemobile.cli.calibration)
    json: bool = False
    hot: list[tuple[int, int]] | None = None
    prepare: Callable[[Path, bytes], None] | None = None  # places the mutated bytes (default: write the file)


def _model_hot_spans(data: bytes) -> list[tuple[int, int]]:
    """Regions of a .tflite outside its large buffers: the flatbuffer tables, names, metadata."""
    from edgemobile.tflite.model import parse_model

    big = sorted((s, s + n) for s, n in parse_model(data).buffer_spans if n > 256)
    spans, at = [], 0
    for start, end in big:
        if start > at:
            spans.append((at, start))
        at = max(at, end)
    if at < len(data):
        spans.append((at, len(data)))
    return spans or [(0, len(data))]


def build_kinds(work: Path, shared: Path | None) -> dict[str, Kind]:
    """The fuzz targets, their seed files written under ``work``; model/image kinds need ``shared``."""
    from PIL import Image

    from edgemobile.data.calibration_builder import build_manifest
    from edgemobile.data.calibration_manifest import dump_manifest

    kinds: dict[str, Kind] = {}
    images = work / "images"
    (images / "n01440764").mkdir(parents=True, exist_ok=True)
    (images / "n01443537").mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for i, cls in enumerate(("n01440764", "n01443537")):
        pixels = bytes(rng.randrange(256) for _ in range(48 * 40 * 3))
        Image.frombytes("RGB", (48, 40), pixels).save(images / cls / f"{cls}_{i}.JPEG", quality=90)
    manifest_doc = build_manifest(images, per_class=1, seed=0, name="fuzz")
    kinds["manifest"] = Kind(
        "manifest", "manifest.json", dump_manifest(manifest_doc).encode(), json=True, entry="calibration",
        argv=lambda f, out, i: ["fetch", str(f), "--local-root", str(images)],
    )
    tofu = {"about": "x", "manifest": "fuzzhosted",
            "files": {f"n0144{i}.JPEG": {"sha256": hashlib.sha256(b"%d" % i).hexdigest(), "size": 1, "url": "http://127.0.0.1:9/x"}
                      for i in range(2)}}
    hosted = {"format": "edgemobile-calibration-manifest", "version": 1, "name": "fuzzhosted",
              "base_url": "http://127.0.0.1:9/", "files": [{"path": f"n0144{i}.JPEG", "sha256": None, "size": None}
                                                          for i in range(2)]}
    (work / "hosted.json").write_text(json.dumps(hosted))

    def place_tofu(case_dir: Path, data: bytes) -> None:
        folder = case_dir / "keras" / "datasets/edgemobile-calibration/fuzzhosted"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tofu-sha256.json").write_bytes(data)
        for i in range(2):
            shutil.copyfile(images / "n01440764" / "n01440764_0.JPEG", folder / f"n0144{i}.JPEG")

    kinds["tofu"] = Kind(
        "tofu", "tofu-sha256.json", json.dumps(tofu).encode(), json=True, entry="calibration",
        argv=lambda f, out, i: ["fetch", str(work / "hosted.json")], prepare=place_tofu,
    )
    if shared is None or not (shared / MODEL).is_file():
        return kinds

    from edgemobile.data.labels import imagenet_classes
    from edgemobile.data.preprocessing import PreprocessSpec
    from edgemobile.metadata import ModelInfo, embed_metadata

    third_party = (shared / MODEL).read_bytes()
    model = work / "model.tflite"
    model.write_bytes(third_party)
    labels = list(imagenet_classes().names)  # the model's 1001st (background) output is dropped
    with_meta = embed_metadata(third_party, ModelInfo(
        name="fuzz", labels=["background"] + labels, preprocess=PreprocessSpec.center_crop(128, mean=128.0, std=128.0),
        extra={"provenance": {"model": "mobilenet_v1_0.25_128_quant (Google QAT)", "precision": "uint8"}}))
    val = sorted((shared / "imagenet" / "val").rglob("*.JPEG"))[:2]
    data_dir = work / "val"
    for path in val:
        (data_dir / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, data_dir / path.parent.name / path.name)
    jpeg = val[0].read_bytes()
    with Image.open(val[1]) as im:
        small = im.convert("RGB").resize((64, 64))
    png_path = work / "seed.png"
    small.save(png_path)
    flat = work / "flat"
    flat.mkdir(exist_ok=True)
    for k, path in enumerate(val):
        shutil.copyfile(path, flat / f"img{k}.JPEG")
    classes = imagenet_classes()
    truth = "".join(f"img{k}.JPEG {classes.index_of(p.parent.name)}\n" for k, p in enumerate(val)).encode()
    label_text = ("\n".join(labels) + "\n").encode()
    image = str(data_dir / val[0].parent.name / val[0].name)

    def model_argv(f: Path, out: Path, i: int) -> list[str]:
        if i % 3 == 1:
            return ["eval", str(f), "--data", str(data_dir), "--json", str(out / "eval.json"), "--quiet"]
        if i % 3 == 2:
            return ["info", str(f), "--json", str(out / "info.json")]
        return ["predict", str(f), image, "--json", str(out / "predict.json")]

    def image_argv(suffix: str):
        def argv(f: Path, out: Path, i: int) -> list[str]:
            if i % 4 == 3:  # the image among good ones in an eval folder
                folder = f.parent / "data" / val[0].parent.name
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(image, folder / "good.JPEG")
                os.replace(f, folder / f"bad{suffix}")
                return ["eval", str(model), "--data", str(f.parent / "data"), "--skip-bad-images",
                        "--json", str(out / "eval.json"), "--quiet"]
            return ["predict", str(model), str(f), "--json", str(out / "predict.json")]
        return argv

    kinds["tflite_meta"] = Kind("tflite_meta", "model.tflite", with_meta, argv=model_argv, hot=_model_hot_spans(with_meta))
    import io
    import zipfile

    from edgemobile.metadata import INFO_FILE, LABELS_FILE, read_associated_files
    from edgemobile.metadata.writer import _append_zip

    packed = read_associated_files(with_meta)
    flatbuffer = with_meta[:min(i.header_offset for i in zipfile.ZipFile(io.BytesIO(with_meta)).infolist())]

    def place_info(case_dir: Path, data: bytes) -> None:  # edgemobile.json, mutated, packed into the model
        (case_dir / "model.tflite").write_bytes(
            _append_zip(flatbuffer, {LABELS_FILE: packed[LABELS_FILE], INFO_FILE: data}))

    kinds["metadata_json"] = Kind("metadata_json", "model.tflite", packed[INFO_FILE], argv=model_argv, json=True,
                                  prepare=place_info)
    kinds["tflite_third_party"] = Kind("tflite_third_party", "model.tflite", third_party, argv=model_argv,
                                       hot=_model_hot_spans(third_party))
    kinds["jpeg"] = Kind("jpeg", "image.JPEG", jpeg, argv=image_argv(".JPEG"), hot=[(0, 1024)])
    kinds["png"] = Kind("png", "image.png", png_path.read_bytes(), argv=image_argv(".png"), hot=[(0, 256)])
    kinds["labels"] = Kind("labels", "labels.txt", label_text,
                           argv=lambda f, out, i: ["predict", str(model), image, "--labels", str(f),
                                                   "--json", str(out / "predict.json")])
    kinds["ground_truth"] = Kind("ground_truth", "truth.txt", truth,
                                 argv=lambda f, out, i: ["eval", str(model), "--data", str(flat), "--ground-truth",
                                                         str(f), "--json", str(out / "eval.json"), "--quiet"])
    return kinds


def _entry(name: str) -> Callable[[list[str]], int]:
    if name == "calibration":
        from edgemobile.cli.calibration import main as calibration_main
        from edgemobile.cli.calibration import run

        return lambda argv: run(calibration_main, argv)
    from edgemobile.cli.main import main

    return main


def case_seed(seed: int, kind: str, case: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{kind}/{case}".encode()).digest()[:8], "little")


def prepare_case(kind: Kind, case: int, seed: int, work: Path) -> tuple[list[str], Path]:
    """Write case ``case``'s mutated file under ``work/case``: (argv, output folder)."""
    rng = random.Random(case_seed(seed, kind.name, case))
    data = mutate_json(kind.seed, rng) if kind.json else mutate(kind.seed, rng, kind.hot)
    case_dir = work / "case"
    shutil.rmtree(case_dir, ignore_errors=True)
    out = case_dir / "out"
    out.mkdir(parents=True)
    target = case_dir / kind.filename
    if kind.prepare:
        kind.prepare(case_dir, data)
    else:
        target.write_bytes(data)
    os.environ["KERAS_HOME"] = str(case_dir / "keras")
    return kind.argv(target, out, case), out


def run_case(kind: Kind, case: int, seed: int, work: Path, timeout: int = 60) -> Outcome:
    """One case in its own forked child."""
    argv, out = prepare_case(kind, case, seed, work)
    code, sig, _, stderr = run_forked(_entry(kind.entry), argv, work / "case", timeout)
    outcome, detail = classify(code, sig, stderr, out)
    return Outcome(kind.name, case, outcome, detail, argv)


def _run_here(entry: Callable[[list[str]], int], argv: list[str], workdir: Path, timeout: int) -> tuple[int, str]:
    """``entry(argv)`` in this process with fds 1 and 2 sent to ``workdir/.stdout`` and
    ``.stderr`` (also when the caller had replaced ``sys.stdout``/``sys.stderr``, as pytest
    does): (exit code, stderr). A traceback is printed there; SIGALRM fires after ``timeout`` s."""
    err_path = workdir / ".stderr"
    saved = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    fd_out = os.open(workdir / ".stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    fd_err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd_out, 1)
    os.dup2(fd_err, 2)
    os.close(fd_out)
    os.close(fd_err)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
    signal.alarm(timeout)
    try:
        code = entry(argv)
        code = 0 if code is None else int(code)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        signal.alarm(0)
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
    return code, err_path.read_text(errors="replace")


def run_batch(kind: Kind, cases: range, seed: int, work: Path, timeout: int = 60, keep: Path | None = None,
              batch: int = 200, entry: Callable[[list[str]], int] | None = None):
    """Outcomes of ``cases``, run up to ``batch`` at a time in one forked child (the fork and
    its copy-on-write faults cost as much as a case). A case that kills the child — a crash
    signal, or SIGALRM after ``timeout`` s — is recorded as such, and a new child carries on
    with the next case. ``entry`` replaces the kind's command (tests of the harness)."""
    entry = entry or _entry(kind.entry)
    next_case = cases.start
    while next_case < cases.stop:
        stop = min(cases.stop, next_case + batch)
        sys.stdout.flush()
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: run the cases, one JSON line per outcome
            code = 0
            try:
                os.close(read_fd)
                import faulthandler

                faulthandler.disable()  # a crash is reported by its signal, not a dump
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                for case in range(next_case, stop):
                    os.write(write_fd, f"start {case}\n".encode())
                    argv, out = prepare_case(kind, case, seed, work)
                    rc, stderr = _run_here(entry, argv, work / "case", timeout)
                    outcome, detail = classify(rc, None, stderr, out)
                    if outcome == "other" and keep is not None:
                        shutil.copytree(work / "case", keep / f"{kind.name}-{case}", dirs_exist_ok=True)
                    result = Outcome(kind.name, case, outcome, detail, argv)
                    os.write(write_fd, (json.dumps(dataclasses.asdict(result)) + "\n").encode())
            except BaseException:
                code = 70
            finally:
                os._exit(code)
        os.close(write_fd)
        running = None
        with os.fdopen(read_fd) as pipe:
            for line in pipe:
                if line.startswith("start "):
                    running = int(line.split()[1])
                    continue
                result = Outcome(**json.loads(line))
                running, next_case = None, result.case + 1
                yield result
        _, status = os.waitpid(pid, 0)
        if running is None and next_case < stop:
            running = next_case  # the child died between cases: charge the next one
        if running is not None:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                detail = f"killed by {signal.Signals(sig).name}" + (" (timeout)" if sig == signal.SIGALRM else "")
            else:
                detail = f"child exited with {os.WEXITSTATUS(status)} during the case"
            if keep is not None:
                shutil.copytree(work / "case", keep / f"{kind.name}-{running}", dirs_exist_ok=True)
            yield Outcome(kind.name, running, "other", detail, [])
            next_case = running + 1


def fuzz(kinds: dict[str, Kind], cases: int, seed: int, work: Path, keep: Path | None = None,
         progress: bool = False, timeout: int = 60) -> dict[str, dict]:
    """Run ``cases`` mutations of every kind; per kind the outcome counts and the non-clean cases."""
    os.environ["EDGEMOBILE_OFFLINE"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for kind in kinds.values():  # import in the parent, once
        _entry(kind.entry)
    # What the commands import lazily, loaded before forking rather than once per child.
    import ai_edge_litert.interpreter  # noqa: F401
    import edgemobile.data.datasets  # noqa: F401
    import edgemobile.eval.evaluate  # noqa: F401
    import edgemobile.eval.predictors  # noqa: F401
    import gc

    gc.freeze()  # children's garbage collections then leave the parent's pages shared (fewer copy-on-write faults)

    results: dict[str, dict] = {}
    for kind in kinds.values():
        counts = dict.fromkeys(OUTCOMES, 0)
        others: list[Outcome] = []
        start = time.perf_counter()
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
        for done, result in enumerate(run_batch(kind, range(cases), seed, work, timeout, keep), 1):
            counts[result.outcome] += 1
            if result.outcome == "other":
                others.append(result)
            if progress and done % 250 == 0:
                print(f"  {kind.name}: {done}/{cases} {counts}", file=sys.stderr, flush=True)
        results[kind.name] = {"counts": counts, "seconds": round(time.perf_counter() - start, 1),
                              "other": [dataclasses.asdict(o) for o in others]}
    return results


def format_table(results: dict[str, dict]) -> str:
    rows = [("kind", "cases", *OUTCOMES, "seconds")]
    for name, r in results.items():
        c = r["counts"]
        rows.append((name, str(sum(c.values())), *(str(c[o]) for o in OUTCOMES), f"{r['seconds']:.0f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=500, help="mutations per kind (default 500)")
    parser.add_argument("--kinds", nargs="+", help="only these kinds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-failures", type=Path, help="copy every non-clean case here")
    parser.add_argument("--json", type=Path, help="write the counts and non-clean cases here")
    args = parser.parse_args(argv)
    shared = shared_path()
    with tempfile.TemporaryDirectory(prefix="edgemobile-fuzz-") as tmp:
        work = Path(tmp)
        kinds = build_kinds(work, shared if (shared / MODEL).is_file() else None)
        if not (shared / MODEL).is_file():
            print(f"{shared / MODEL} not found (set EDGEMOBILE_SHARED): only the kinds {sorted(kinds)} run",
                  file=sys.stderr)
        if args.kinds:
            unknown = set(args.kinds) - set(kinds)
            if unknown:
                parser.error(f"unknown or unavailable kinds {sorted(unknown)}; have {sorted(kinds)}")
            kinds = {k: kinds[k] for k in args.kinds}
        results = fuzz(kinds, args.cases, args.seed, work, args.keep_failures, progress=True)
    print(format_table(results))
    for name, r in results.items():
        for o in r["other"][:20]:
            print(f"{name} #{o['case']}: {o['detail']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 1 if any(r["counts"]["other"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
