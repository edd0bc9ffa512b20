from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from edgemobile.data.datasets import class_key, find_images, labeled_images, stratified_sample
from edgemobile.data.labels import imagenet_classes, read_label_file
from edgemobile.errors import EdgeMobileError

SYNSETS = imagenet_classes().ids


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(path)
    return path


@pytest.fixture
def synset_tree(tmp_path):
    for c, synset in enumerate(SYNSETS[:5]):
        for i in range(c + 1):  # unbalanced: 1..5 images per class
            _image(tmp_path / synset / f"img_{i}.JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    _image(tmp_path / ".hidden" / "skip.jpg")
    return tmp_path


def test_imagenet_classes_are_the_standard_order():
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes.ids[0] == "n01440764" and list(classes.ids) == sorted(classes.ids)
    assert classes.short_name(0) == "tench" and classes.index_of("n01443537") == 1


def test_find_images_is_recursive_and_skips_non_images(synset_tree):
    images = find_images(synset_tree)
    assert len(images) == 15 and all(p.suffix == ".JPEG" for p in images)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(EdgeMobileError, match="no images found"):
        find_images(tmp_path)
    with pytest.raises(EdgeMobileError, match="no such folder"):
        find_images(tmp_path / "nope")


def test_class_key_understands_both_imagenet_layouts(tmp_path):
    assert class_key(tmp_path / "n01440764" / "x.JPEG", tmp_path) == "n01440764"
    assert class_key(tmp_path / "n01440764_tench.JPEG", tmp_path) == "n01440764"
    assert class_key(tmp_path / "photo.jpg", tmp_path) == ""


def test_stratified_sample_spreads_over_classes_and_is_reproducible(synset_tree):
    images = find_images(synset_tree)
    sample = stratified_sample(images, synset_tree, 5, seed=3)
    assert Counter(class_key(p, synset_tree) for p in sample) == Counter({s: 1 for s in SYNSETS[:5]})
    assert sample == stratified_sample(images, synset_tree, 5, seed=3)
    assert len(stratified_sample(images, synset_tree, 100, seed=0)) == 15
    seeds = {tuple(stratified_sample(images, synset_tree, 9, seed=s)) for s in range(5)}
    assert len(seeds) > 1
    with pytest.raises(EdgeMobileError):
        stratified_sample(images, synset_tree, 0)


def test_labeled_synset_folders(synset_tree):
    pairs = labeled_images(synset_tree, imagenet_classes())
    assert Counter(label for _, label in pairs) == Counter({0: 1, 1: 2, 2: 3, 3: 4, 4: 5})


def test_folders_that_are_not_classes_are_rejected(tmp_path):
    _image(tmp_path / "cats" / "a.jpg")
    with pytest.raises(EdgeMobileError, match="do not name a class"):
        labeled_images(tmp_path, imagenet_classes())


@pytest.mark.parametrize("content", [
    "a.JPEG 0\nb.JPEG 999\n",
    "filename,label\na.JPEG,n01440764\nb.JPEG,999\n",
    "a.JPEG,0\nb.JPEG,n15075141\n",
])
def test_ground_truth_files(tmp_path, content):
    for name in ("a.JPEG", "b.JPEG"):
        _image(tmp_path / name)
    gt = tmp_path / "gt.txt"
    gt.write_text(content)
    assert [label for _, label in labeled_images(tmp_path, imagenet_classes(), gt)] == [0, 999]


@pytest.mark.parametrize("content,words", [
    ("a.JPEG\n", "expected 'name index'"),
    ("a.JPEG 1000\n", "outside 0..999"),
    ("a.JPEG,dog\n", "not a class"),
    ("missing.JPEG 3\n", "does not exist"),
    ("\n\n", "no ground-truth entries"),
])
def test_bad_ground_truth_files(tmp_path, content, words):
    _image(tmp_path / "a.JPEG")
    gt = tmp_path / "gt.txt"
    gt.write_text(content)
    with pytest.raises(EdgeMobileError, match=words) as info:
        labeled_images(tmp_path, imagenet_classes(), gt)
    assert str(gt) in str(info.value)


def test_label_files(tmp_path):
    good = tmp_path / "labels.txt"
    good.write_text("cat\ndog\n\n")
    assert read_label_file(good, expected=2).names == ("cat", "dog")
    with pytest.raises(EdgeMobileError, match="has 2 labels but the model has 1000"):
        read_label_file(good, expected=1000)
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(EdgeMobileError, match="empty"):
        read_label_file(empty)
    binary = tmp_path / "labels.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(EdgeMobileError, match="not a text label file"):
        read_label_file(binary)


def test_readable_names_cut_synset_synonyms_but_keep_user_labels_whole(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764 tench, Tinca tinca\nshoes, red\nshoes, blue\n")
    classes = read_label_file(labels)
    assert classes.label_lines() == ["tench", "shoes, red", "shoes, blue"]
    assert imagenet_classes().short_name(2) == "great white shark"
    assert classes.index_of("Shoes,  Blue") == 2


def test_class_name_folders_beat_file_name_synsets(tmp_path):
    """Issue 27: ``daisy/n01440764_x.JPEG`` (ImageNet photos sorted into the user's class
    folders) was read as tench by its file-name prefix, then refused."""
    from edgemobile.data.datasets import calibration_warning
    from edgemobile.data.labels import ClassList

    for folder, name in (("daisy", "n01440764_1.JPEG"), ("Rose", "n01443537_2.JPEG"), ("rose", "photo.jpg")):
        _image(tmp_path / folder / name)
    classes = ClassList.from_names(["daisy", "rose"])
    pairs = labeled_images(tmp_path, classes)
    assert sorted((p.name, label) for p, label in pairs) == [("n01440764_1.JPEG", 0), ("n01443537_2.JPEG", 1),
                                                            ("photo.jpg", 1)]
    assert calibration_warning(tmp_path, [p for p, _ in pairs], classes) is None
    # without the model's classes (the draw's strata) the file-name synset still labels a flat file
    assert class_key(tmp_path / "daisy" / "n01440764_1.JPEG", tmp_path) == "n01440764"
    # a folder that names no class of the model: the synset prefix stays the label
    _image(tmp_path / "misc" / "n01440764_3.JPEG")
    warning = calibration_warning(tmp_path, find_images(tmp_path), classes)
    assert warning.startswith("calibration: 1 of the 4 images in ") and "(ImageNet synsets)" in warning
