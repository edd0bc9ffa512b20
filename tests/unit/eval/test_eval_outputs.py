"""``eval --outputs`` / ``eval --reference FILE.npz``: each image's raw output saved with its id,
and a later run (a device) compared with it image by image. Runtime-only: a real third-party
uint8 model (Google's QAT MobileNetV1 0.25/128, 1001 outputs) on real ImageNet images."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from edgemobile.cli.main import main
from edgemobile.eval.evaluate import format_p
from edgemobile.intervals import mcnemar, wilson
from edgemobile.eval.image_outputs import read_outputs

MODEL = "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite"
LIMIT = 12


@pytest.fixture(scope="module")
def host_run(shared, tmp_path_factory):
    """The 'host' run: eval with --outputs and --json."""
    folder = tmp_path_factory.mktemp("host")
    args = ["eval", str(shared / MODEL), "--data", str(shared / "imagenet/val"), "--limit", str(LIMIT), "--quiet"]
    assert main(args + ["--outputs", str(folder / "host.npz"), "--json", str(folder / "host.json")]) == 0
    return args, folder / "host.npz", json.loads((folder / "host.json").read_text())


def eval_against(args, reference, tmp_path, capsys, *extra):
    out = tmp_path / "device.json"
    code = main([*args, "--reference", str(reference), "--json", str(out), *extra])
    text = capsys.readouterr().out
    return code, text, json.loads(out.read_text()) if out.exists() else None


def test_outputs_file_holds_raw_outputs_with_ids(host_run, shared):
    _, path, summary = host_run
    saved = read_outputs(path)
    assert len(saved.ids) == LIMIT == summary["images"]
    assert all(i.count("/") == 1 and i.startswith("n") and i.endswith(".JPEG") for i in saved.ids)
    assert all((shared / "imagenet/val" / i).is_file() for i in saved.ids)  # relative to --data
    assert saved.raw.dtype == np.uint8 and saved.raw.shape == (LIMIT, 1001)  # the tensor as it came out
    assert saved.meta["class_offset"] == 1 and saved.meta["runtime"] == summary["model"]["runtime"]
    probs = saved.probabilities()
    assert probs.shape == (LIMIT, 1000)
    top1 = 100.0 * np.mean(probs.argmax(1) == saved.labels)
    assert top1 == pytest.approx(summary["model"]["top1"])
    assert path.stat().st_size < 1001 * LIMIT  # compact: less than a byte per score


def test_same_run_as_reference_is_identical_image_by_image(host_run, tmp_path, capsys):
    args, path, summary = host_run
    code, text, result = eval_against(args, path, tmp_path, capsys)
    assert code == 0
    c = result["image_comparison"]
    assert c["same_model"] is True and c["images"] == LIMIT and c["identical_images"] == LIMIT
    assert c["top1_agreement"] == 100.0 and c["max_steps"] == 0 and c["differing"] == []
    assert result["reference"]["top1"] == result["model"]["top1"] == summary["model"]["top1"]
    assert result["comparison"]["mean_kl"] == pytest.approx(0.0, abs=1e-9)
    assert "image by image against" in text and f"{LIMIT}/{LIMIT}" in text
    # The same outputs: no image changed, so nothing to call a difference.
    c = result["comparison"]
    assert c["mcnemar_p"] == 1.0 and c["top1_only_model"] == c["top1_only_reference"] == 0
    assert c["top1_delta_ci95"][0] < 0 < c["top1_delta_ci95"][1]
    assert "top-1 delta +0.00 pt" in text and "not significant (McNemar p = 1:" in text


def test_a_device_that_differs_is_reported_per_image(host_run, tmp_path, capsys):
    """A reference whose outputs differ on two images (as another machine's would): one by
    3 steps on its top class, one where the runner-up overtakes the top class."""
    args, path, _ = host_run
    saved = read_outputs(path)
    raw = saved.raw.copy()
    top = raw[:, 1:].argmax(1) + 1
    j = next(k for k in range(LIMIT) if raw[k, top[k]] < 255)  # flipped: the runner-up goes 1 above the top
    i = 1 if j == 0 else 0  # nudged: its lowest score 3 steps up, top-1 unchanged
    raw[i, raw[i].argmin()] += 3
    second = np.argsort(-raw[j, 1:].astype(int), kind="stable")[1] + 1
    steps = int(raw[j, top[j]]) + 1 - int(raw[j, second])
    raw[j, second] = raw[j, top[j]] + 1
    other = tmp_path / "device.npz"
    dataclasses.replace(saved, raw=raw).write(other)
    code, text, result = eval_against(args, other, tmp_path, capsys)
    assert code == 0
    c = result["image_comparison"]
    assert c["identical_images"] == LIMIT - 2 and c["max_steps"] == max(3, steps)
    assert c["top1_agreement"] == pytest.approx(100.0 * (LIMIT - 1) / LIMIT)
    assert {d["id"] for d in c["differing"]} == {saved.ids[i], saved.ids[j]}
    flipped = [d for d in c["differing"] if d["top1_differs"]]
    assert [d["id"] for d in flipped] == [saved.ids[j]] and flipped[0]["reference_top1"] == second - 1
    assert not flipped[0]["top1_tied"] and c["top1_ties"] == 0  # the model's own top-1 is strictly highest
    assert c["step"] == pytest.approx(saved.meta["output_scale"])
    assert c["mean_steps"] == pytest.approx((3 + steps) / (LIMIT * 1001))
    assert saved.ids[j] in text and "top-1 differs" in text
    # 11 of 12 agree: the interval says how little 12 images pin that down.
    agreement_ci = [100 * x for x in wilson(LIMIT - 1, LIMIT)]
    assert c["top1_agreement_ci95"] == pytest.approx(agreement_ci, abs=1e-4)
    assert result["comparison"]["top1_agreement_ci95"] == pytest.approx(agreement_ci, abs=1e-4)
    assert f"(91.67 %, 95 % interval [{agreement_ci[0]:.1f}, {agreement_ci[1]:.1f}])" in text


def test_intervals_of_two_different_models(shared, tmp_path, capsys):
    """eval --json gives each figure its 95 % interval and the top-1 delta its McNemar test, and
    the printed table says whether the delta is more than noise: Google's MobileNetV1 0.25/128
    against its 0.5/160 on 32 images (published top-1 39.5 vs 57.2)."""
    out = tmp_path / "eval.json"
    n = 32
    assert main(["eval", str(shared / MODEL), "--data", str(shared / "imagenet/val"), "--limit", str(n),
                 "--reference", str(shared / "weights/mobilenet_v1/mobilenet_v1_0.5_160_quant.tflite"),
                 "--json", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    result = json.loads(out.read_text())
    for side in ("model", "reference"):
        figures = result[side]
        for key in ("top1", "top5"):
            low, high = figures[f"{key}_ci95"]
            assert low < figures[key] < high and high - low > 20  # 32 images: wide
            assert [low, high] == pytest.approx([100 * x for x in wilson(round(figures[key] * n / 100), n)],
                                                abs=1e-4)
    c = result["comparison"]
    b, worse = c["top1_only_model"], c["top1_only_reference"]
    assert b - worse == round(c["top1_delta"] * n / 100) and b + worse > 0  # a real comparison
    assert c["top1_delta_ci95"][0] < c["top1_delta"] < c["top1_delta_ci95"][1]
    assert c["top1_agreement_ci95"][0] < c["top1_agreement"] < c["top1_agreement_ci95"][1]
    assert c["mcnemar_p"] == pytest.approx(mcnemar(b, worse))
    verdict = "significant" if c["mcnemar_p"] < 0.05 else "not significant"
    low, high = c["top1_delta_ci95"]
    assert (f"top-1 delta {c['top1_delta']:+.2f} pt [{low:+.1f}, {high:+.1f}], {verdict} "
            f"(McNemar p = {format_p(c['mcnemar_p'])}: {b} images right only for the model, {worse} only for "
            "the reference)") in text
    assert f"{result['model']['top1']:.2f} [{result['model']['top1_ci95'][0]:.1f}, " in text


def test_bad_references_and_outputs_are_one_line(host_run, tmp_path, capsys):
    args, path, _ = host_run
    saved = read_outputs(path)
    fewer = tmp_path / "fewer.npz"
    dataclasses.replace(saved, ids=saved.ids[1:], labels=saved.labels[1:], raw=saved.raw[1:]).write(fewer)
    relabeled = tmp_path / "relabeled.npz"
    dataclasses.replace(saved, labels=(saved.labels + 1) % 1000).write(relabeled)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not an archive")
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(3))
    cases = [
        (["--reference", str(fewer)], "1 of the 12 evaluated images are not in it"),
        (["--reference", str(relabeled)], "images have other labels there"),
        (["--reference", str(junk)], "not an edgemobile eval outputs file"),
        (["--reference", str(plain)], "not an edgemobile eval outputs file (no ids, labels, raw, meta)"),
        (["--reference", str(tmp_path / "absent.npz")], "no such outputs file"),
        (["--outputs", str(tmp_path / "out.json")], "give it a .npz name"),
        (["--outputs", str(path)], "already exists; pass --force"),
    ]
    for extra, message in cases:
        capsys.readouterr()
        assert main([*args, *extra, "--json", str(tmp_path / "r.json")]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert err.startswith("edgemobile: error: ") and message in err and "\n" not in err, (extra, err)
        assert not (tmp_path / "r.json").exists() and not (tmp_path / "out.json").exists()


def test_outputs_leave_out_skipped_images(shared, tmp_path):
    """--outputs with --skip-bad-images records exactly the images that were evaluated."""
    images = sorted((shared / "imagenet" / "val").rglob("*.JPEG"))[:6]
    data = tmp_path / "val"
    for path in images:
        (data / path.parent.name).mkdir(parents=True, exist_ok=True)
        (data / path.parent.name / path.name).write_bytes(path.read_bytes())
    bad = data / images[0].parent.name / "ILSVRC2012_val_bad.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 200)
    model = str(shared / "weights/mobilenet_v1/mobilenet_v1_0.25_128_quant.tflite")
    out = tmp_path / "device.npz"
    assert main(["eval", model, "--data", str(data), "--skip-bad-images", "--outputs", str(out), "--quiet"]) == 0
    recorded = read_outputs(out)
    assert len(recorded.ids) == 6 and not any("bad" in i for i in recorded.ids)
    assert main(["eval", model, "--data", str(data), "--skip-bad-images", "--reference", str(out), "--quiet",
                 "--json", str(tmp_path / "cmp.json")]) == 0
    assert json.loads((tmp_path / "cmp.json").read_text())["image_comparison"]["images"] == 6
