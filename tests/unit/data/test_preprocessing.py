import numpy as np
import pytest
from PIL import Image

from edgemobile.data.preprocessing import PreprocessSpec, load_rgb
from edgemobile.errors import EdgeMobileError

MOBILENET = PreprocessSpec.center_crop(224, mean=127.5, std=127.5)


def test_center_crop_recipe_matches_model_cards():
    assert MOBILENET.resize_shorter == 256
    assert PreprocessSpec.center_crop(160, 127.5, 127.5).resize_shorter == 183
    assert MOBILENET.input_range == (-1.0, 1.0)


def test_pipeline_shape_and_values(tmp_path):
    # A wide image with a red left half: the center crop keeps the middle, resized from 256.
    arr = np.zeros((300, 600, 3), np.uint8)
    arr[:, :300, 0] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(arr).save(path)
    pixels = MOBILENET.crop_pixels(load_rgb(path))
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    x = MOBILENET(path)
    assert x.dtype == np.float32 and x.min() >= -1.0 and x.max() <= 1.0
    assert np.isclose(x[0, 0, 0], 1.0) and np.isclose(x[0, -1, 0], -1.0)  # left red, right black
    np.testing.assert_allclose(MOBILENET.normalize(np.array([[[0, 255, 127.5]]])), [[[-1, 1, 0]]])


def test_per_channel_mean_std():
    spec = PreprocessSpec.center_crop(224, mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    x = spec.normalize(np.full((1, 1, 3), 128, np.uint8))
    np.testing.assert_allclose(x[0, 0], [(128 - 123.675) / 58.395, (128 - 116.28) / 57.12, (128 - 103.53) / 57.375], rtol=1e-6)


def test_spec_round_trips_through_dict():
    assert PreprocessSpec.from_dict(MOBILENET.to_dict()) == MOBILENET
    with pytest.raises(EdgeMobileError, match="invalid preprocessing spec"):
        PreprocessSpec.from_dict({"size": 224})


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "I;16", "LA"])
def test_odd_colour_modes_become_rgb(tmp_path, mode):
    img = Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode) if mode != "I;16" else Image.new("I;16", (40, 30), 40000)
    ext = "tiff" if mode in ("CMYK", "I;16") else "png"
    path = tmp_path / f"img.{ext}"
    img.save(path)
    rgb = load_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (40, 30)


def test_cmyk_jpeg_colours_survive(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (32, 32), (220, 30, 30)).convert("CMYK").save(path, quality=95)
    r, g, b = np.asarray(load_rgb(path)).reshape(-1, 3).mean(0)
    assert r > 180 and g < 80 and b < 80


def test_png_alpha_is_composited_on_white(tmp_path):
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 255  # red, but fully transparent on the left half
    rgba[:, 5:, 3] = 255
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = np.asarray(load_rgb(path))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 9]) == (255, 0, 0)


def test_corrupt_and_truncated_images_give_one_line_errors(tmp_path):
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"this is not an image")
    for path, words in [(truncated, "corrupt or truncated"), (garbage, "not an image"), (tmp_path / "missing.jpg", "no such")]:
        with pytest.raises(EdgeMobileError) as info:
            load_rgb(path)
        message = str(info.value)
        assert str(path) in message and words in message and "\n" not in message
