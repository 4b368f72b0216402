"""Bad and odd image files: the reader refuses each with a clear reason, ``lrpseg segment`` finishes the
batch, good files still get masks and existing masks stay untouched."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from lrpseg.core import images as images_module
from lrpseg.core.images import MAX_PIXELS, ImageReadError, probe_image, read_image, scan_folder
from reliability_corpus import BOMB_SIDE, kinds, make_corpus
from reliability_helpers import (
    child_env,
    drop_dac_override,
    lrpseg_script,
    permissions_enforced,
    save_slim_model,
    snapshot,
    temp_leftovers,
    without_dac_override,
)

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="POSIX corpus (FIFO, symlinks)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, make_corpus(folder, unreadable=permissions_enforced())


def _read_in_thread(path: Path, timeout: float = 10.0):
    """read_image(path) on a daemon thread: a reader that blocks (on a pipe, say) fails the test, not hangs
    it."""
    result: dict = {}

    def target():
        try:
            result["image"] = read_image(path)
        except ImageReadError as error:
            result["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"read_image({path.name!r}) still blocked after {timeout} s"
    return result


def test_corpus_has_at_least_20_kinds_of_bad_or_odd_file(corpus):
    _, cases = corpus
    assert len(kinds(cases)) >= 20
    assert sum(case.expect == "error" for case in cases) >= 15
    assert sum(case.expect == "ok" for case in cases) >= 10


def test_reader_gives_each_bad_file_a_clear_reason_and_decodes_the_odd_ones(corpus):
    folder, cases = corpus
    with without_dac_override():
        for case in cases:
            path = folder / case.name
            result = _read_in_thread(path)
            if case.expect == "error":
                assert "error" in result, f"{case.kind}: decoded instead of refused"
                error = result["error"]
                assert error.path == path
                assert str(path) in str(error), f"{case.kind}: message does not name the file"
                assert case.reason.lower() in error.reason.lower(), f"{case.kind}: {error.reason!r}"
            else:
                assert "image" in result, f"{case.kind}: {result.get('error')}"
                image = result["image"]
                assert image.shape == case.shape, case.kind
                assert image.dtype in (np.uint8, np.uint16)


def test_odd_files_decode_to_the_right_pixels(corpus):
    folder, _ = corpus
    reference = read_image(folder / "alpha.png").astype(int)  # the lossless original, alpha dropped
    assert read_image(folder / "deep16.png").dtype == np.uint16
    np.testing.assert_array_equal(read_image(folder / "deep16.png") // 257, reference)
    np.testing.assert_array_equal(read_image(folder / "multipage.tif"), reference)  # first page
    for name, tolerance in (("cmyk.jpg", 20), ("exif_rotated.jpg", 30), ("palette.png", 30)):
        image = read_image(folder / name).astype(int)
        assert image.shape == reference.shape, name  # EXIF orientation ignored: the file's own grid
        assert np.abs(image - reference).mean() < tolerance, name  # not inverted, not channel-swapped


def test_decompression_bomb_refused_from_the_header_before_decoding(corpus, monkeypatch):
    folder, _ = corpus
    data = (folder / "bomb.png").read_bytes()
    assert len(data) < 100_000  # a few kB on disk ...
    idat_start = data.index(b"IDAT") + 4
    idat_length = int.from_bytes(data[idat_start - 8 : idat_start - 4], "big")
    raw = zlib.decompress(data[idat_start : idat_start + idat_length])
    assert len(raw) == BOMB_SIDE * (1 + BOMB_SIDE // 8)  # ... a genuine stream of 144 MP ...
    assert probe_image(folder / "bomb.png")[1:] == (BOMB_SIDE, BOMB_SIDE)
    assert BOMB_SIDE**2 > MAX_PIXELS  # ... above the documented limit

    def must_not_decode(*args, **kwargs):
        raise AssertionError("the decoder was called on a file the header already refuses")

    monkeypatch.setattr(images_module.cv2, "imdecode", must_not_decode)
    for name in ("bomb.png", "bomb.jpg"):
        with pytest.raises(ImageReadError, match=r"too many pixels .*the limit is 100 MP"):
            read_image(folder / name)


def test_scan_lists_candidates_and_reports_the_rest(corpus):
    folder, cases = corpus
    images, problems = scan_folder(folder)
    listed = {path.name for path in images}
    reported = {path.name: reason for path, reason in problems}
    for case in cases:
        if case.listed:
            assert case.name in listed, case.kind
        else:
            assert case.name not in listed, case.kind
            assert case.scan_reason in reported.get(case.name, ""), case.kind
    assert len(listed) + len(reported) == len(cases)


def test_lrpseg_segment_finishes_the_batch_and_keeps_existing_masks(corpus, tmp_path):
    folder, cases = corpus
    model = tmp_path / "slim.safetensors"
    save_slim_model(model, input_size=32)
    out = tmp_path / "out"
    out.mkdir()
    # Masks a user already has: one of a good image, one of a bad image, one unrelated.
    existing = [out / "deep16.png", out / "zero_bytes.png", out / "hand_made.png"]
    for i, path in enumerate(existing):
        path.write_bytes(f"existing mask {i}".encode())
    before = snapshot(existing)

    started = time.monotonic()
    run = subprocess.run(
        [
            lrpseg_script(),
            "segment",
            str(folder),
            "--model",
            str(model),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        errors="backslashreplace",
        env=child_env(),
        timeout=300,
        preexec_fn=drop_dac_override,
    )
    seconds = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr

    assert snapshot(existing) == before  # no existing mask touched
    report = json.loads((out / "lrpseg-report.json").read_text(encoding="utf-8"))
    records = {Path(record["image"]).name: record for record in report["images"]}
    assert len(records) == len(cases), sorted(set(c.name for c in cases) ^ set(records))
    error_lines = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    for case in cases:
        record = records[case.name]
        if case.expect == "error":
            reason = case.scan_reason if not case.listed else case.reason
            assert record["error"] and case.name in record["error"], case.kind
            assert reason.lower() in record["error"].lower(), (case.kind, record["error"])
            assert record["mask"] is None
            assert sum(case.name in line for line in error_lines) == 1, case.kind
        elif case.name == "deep16.png":
            assert record["error"] is None and record["mask"] is None and record["kept_existing"] == ["deep16.png"]
        else:
            assert record["error"] is None, (case.kind, record["error"])
            mask = read_image(out / record["mask"])
            assert mask.shape == case.shape[:2], case.kind  # on the file's own pixel grid
            assert set(np.unique(mask)) <= {0, 255}
    n_ok = sum(case.expect == "ok" for case in cases)
    assert report["summary"] == {
        "images": len(cases),
        "masks_written": n_ok - 1,
        "errors": len(cases) - n_ok,
        "kept_existing": 1,
        "corrected_masks": 0,
    }
    assert temp_leftovers(out) == []
    print(f"lrpseg segment over {len(cases)} corpus files: {seconds:.1f} s")


def test_project_labels_and_caches_every_listed_file_including_odd_names(corpus):
    """Non-UTF-8 and 255-byte names can be labelled, cached, undone and read back after reopening."""
    from lrpseg.core.labels import DAMAGED, UNDAMAGED
    from lrpseg.core.project import Project

    folder, cases = corpus
    listed = sorted(case.name for case in cases if case.listed)
    labels = {rel: (DAMAGED, UNDAMAGED)[i % 2] for i, rel in enumerate(listed)}
    with Project.open(folder) as project:
        assert sorted(project.images()) == listed
        assert {path.name for path, _ in project.scan_problems} == {c.name for c in cases if not c.listed}
        assert project.set_labels(labels)
        for i, rel in enumerate(listed):
            project.store_prediction(rel, "m", i / 100)
            project.set_threshold_override(rel, "ours/bmm", 0.5)
            project.store_relevance(rel, "m", "ours", np.full((2, 2), i, np.float32))
    with Project.open(folder) as project:
        assert project.labels() == labels
        assert project.predictions("m") == {rel: i / 100 for i, rel in enumerate(listed)}
        assert set(project.threshold_overrides("ours/bmm")) == set(listed)
        assert all(project.load_relevance(rel, "m", "ours")[0, 0] == i for i, rel in enumerate(listed))
        assert project.undo() in listed and project.labels() == {}
        project.clear_cache()


def test_one_unwritable_mask_does_not_abort_the_batch(tmp_path, capsys):
    import cv2
    from lrpseg.core.cli import main as lrpseg_main

    stem = "S" * 248  # one long name in two folders: each keeps its folder, both names cut to fit
    for sub in ("a", "b"):
        (tmp_path / "images" / sub).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "images" / sub / f"{stem}.png"), np.full((40, 40, 3), 120, np.uint8))
    cv2.imwrite(str(tmp_path / "images" / "b" / "zz.png"), np.full((40, 40, 3), 120, np.uint8))
    model = tmp_path / "slim.safetensors"
    save_slim_model(model, input_size=32)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_bytes(b"a file where the folder of a/'s masks would go")
    code = lrpseg_main(["segment", str(tmp_path / "images"), "--model", str(model), "--out", str(out)])
    capsys.readouterr()
    assert code == 0
    assert (out / "b" / "zz.png").exists()  # the files after the failing one still get masks
    report = json.loads((out / "lrpseg-report.json").read_text(encoding="utf-8"))
    assert report["summary"]["images"] == 3 and report["summary"]["masks_written"] == 2
    failed = [record for record in report["images"] if record["error"]]
    assert len(failed) == 1 and f"a/{stem}.png" in failed[0]["error"] and "could not write" in failed[0]["error"]
    long_masks = [record["mask"] for record in report["images"] if record["mask"] and record["mask"] != "b/zz.png"]
    assert len(long_masks) == 1 and long_masks[0].startswith("b/S") and (out / long_masks[0]).is_file()


def test_reliability_md_matches_the_corpus(tmp_path):
    """tests/RELIABILITY.md states the corpus figures; keep them true."""
    import re

    from reliability_helpers import ROOT

    cases = make_corpus(tmp_path / "full", unreadable=True)
    text = (ROOT / "tests" / "RELIABILITY.md").read_text(encoding="utf-8")
    match = re.search(
        r"Kinds of bad or odd file tried: \*\*(\d+)\*\* \((\d+) files.*?\*\*(\d+)\*\* kinds must be refused,"
        r"\s+\*\*(\d+)\*\* are odd but valid",
        text,
        re.S,
    )
    assert match, "the corpus figures are missing from tests/RELIABILITY.md"
    refused = kinds([case for case in cases if case.expect == "error"])
    valid = kinds([case for case in cases if case.expect == "ok"])
    assert tuple(map(int, match.groups())) == (len(kinds(cases)), len(cases), len(refused), len(valid))
