"""core.labels: labels from folder names, CSV/JSON round trips, clear errors; core.atomic underneath."""

import json
import os

import cv2
import numpy as np
import pytest
from lrpseg.core.atomic import atomic_open, atomic_save_npy, atomic_write_bytes, atomic_write_text
from lrpseg.core.labels import (
    DAMAGED,
    LABELS,
    UNDAMAGED,
    labels_from_folders,
    normalise_label,
    read_labels,
    write_labels,
)


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cv2.imencode(".png", np.zeros((3, 3), np.uint8))[1].tobytes())


def test_labels_from_folders_nearest_ancestor_decides(tmp_path):
    for rel in [
        "Damaged/a.png",
        "undamaged/b.jpg",
        "site1/DAMAGED/c.png",
        "damaged/x/undamaged/d.png",
        "undamaged/deep/er/e.tif",
        "loose.png",
        "other/f.png",
        ".lrpseg/damaged/g.png",
    ]:
        _png(tmp_path / rel)
    assert labels_from_folders(tmp_path) == {
        "Damaged/a.png": DAMAGED,
        "damaged/x/undamaged/d.png": UNDAMAGED,
        "site1/DAMAGED/c.png": DAMAGED,
        "undamaged/b.jpg": UNDAMAGED,
        "undamaged/deep/er/e.tif": UNDAMAGED,
    }
    # The root's own name does not count: only sub-folders label.
    assert labels_from_folders(tmp_path / "undamaged" / "deep") == {}


def test_synonyms():
    assert LABELS == (UNDAMAGED, DAMAGED)
    for value in ["damaged", " Damaged ", "1", "TRUE", "yes", "defect", True, 1]:
        assert normalise_label(value) == DAMAGED
    for value in ["undamaged", "0", "false", "No", "ok", False, 0]:
        assert normalise_label(value) == UNDAMAGED
    for value in ["broken", "", None, 2, 0.5]:
        with pytest.raises(ValueError, match="unknown label"):
            normalise_label(value)


@pytest.mark.parametrize("suffix", [".csv", ".json", ".CSV"])
def test_round_trip(tmp_path, suffix):
    labels = {"b/ü 1.png": "damaged", "a,comma.png": "0", 'q"uote.tif': "ok", "c.png": True}
    path = tmp_path / f"labels{suffix}"
    write_labels(path, labels)
    expected = {"a,comma.png": UNDAMAGED, "b/ü 1.png": DAMAGED, "c.png": DAMAGED, 'q"uote.tif': UNDAMAGED}
    back = read_labels(path)
    assert back == expected and list(back) == sorted(expected)
    if suffix == ".json":
        assert json.loads(path.read_text(encoding="utf-8")) == expected


def test_csv_written_form_and_lenient_read(tmp_path):
    path = tmp_path / "l.csv"
    write_labels(path, [("x.png", "damaged"), ("a.png", "undamaged")])
    assert path.read_text(encoding="utf-8") == "image,label\na.png,undamaged\nx.png,damaged\n"
    path.write_text("\ufeffnote, Label ,IMAGE\nhi,1,.\\sub\\a.png\n\n,,\nyo,OK,./b.png\n", encoding="utf-8")
    assert read_labels(path) == {"b.png": UNDAMAGED, "sub/a.png": DAMAGED}


@pytest.mark.parametrize(
    "text, message",
    [
        ("image,label\na.png,damaged\nb.png,broken\n", r"line 3: unknown label 'broken'"),
        ("image,verdict\na.png,damaged\n", r"line 1: missing column 'label'"),
        ("", r"line 1: empty file"),
        ("image,label\na.png,damaged\nb.png\n", r"line 3: expected 2 columns, got 1"),
        ("image,label\n,damaged\n", r"line 2: empty or missing image path"),
        ("image,label\na.png,1\nc.png,0\na.png,0\n", r"line 4: 'a.png' is labelled both"),
    ],
)
def test_bad_csv_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        read_labels(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"a.png": "damaged", "b.png": "meh"}', r"entry 'b.png': unknown label 'meh'"),
        ('{"a.png": null}', r"entry 'a.png': unknown label None"),
        ('["a.png", "damaged"]', r"expected a JSON object"),
        ('{"a.png": "damaged",\n "b.png": }', r"line 2: invalid JSON"),
    ],
)
def test_bad_json_names_file_and_entry(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as info:
        read_labels(path)
    assert str(path) in str(info.value)


def test_unknown_suffix_and_label_on_write(tmp_path):
    with pytest.raises(ValueError, match="expected .csv or .json"):
        write_labels(tmp_path / "l.txt", {"a.png": "damaged"})
    with pytest.raises(ValueError, match="expected .csv or .json"):
        read_labels(tmp_path / "l.yaml")
    with pytest.raises(ValueError, match="unknown label"):
        write_labels(tmp_path / "l.csv", {"a.png": "scratched"})
    assert not (tmp_path / "l.csv").exists()


def test_atomic_writes_leave_old_file_on_error(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_open(path, "w") as handle:
        handle.write("half of the new")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]  # no temporary file left behind
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    with pytest.raises(FileExistsError):
        atomic_write_bytes(path, b"newer", overwrite=False)
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["f.txt"]
    atomic_write_bytes(tmp_path / "g.bin", b"x", overwrite=False)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "g.bin").stat().st_mode & 0o777 == 0o666 & ~umask
    array = np.arange(6, dtype=np.float32).reshape(2, 3)
    atomic_save_npy(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), array)
