import json

import numpy as np
import pytest
from lrpseg.core.evaluate import read_mask
from lrpseg.core.export import COCO_NAME, PROVENANCE_NAME, REPORT_NAME, Exporter, rle_decode, rle_encode


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (32, 17)])
def test_rle_round_trip(shape):
    rng = np.random.default_rng(0)
    for density in (0.0, 0.1, 0.9, 1.0):
        mask = rng.random(shape) < density
        rle = rle_encode(mask)
        assert sum(rle["counts"]) == mask.size
        np.testing.assert_array_equal(rle_decode(rle), mask)


def test_rle_is_column_major_starting_with_zeros():
    mask = np.array([[1, 0], [1, 1]], dtype=bool)
    assert rle_encode(mask)["counts"] == [0, 2, 1, 1]


def test_exporter_writes_masks_scores_reports(tmp_path):
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    score = np.where(mask, 0.9, 0.1).astype(np.float32)
    exporter = Exporter(tmp_path, provenance={"rule_set": "ours"}, write_coco=True)
    exporter.add(tmp_path / "in" / "a.png", mask, score, probability=0.8, threshold=0.5)
    exporter.add(tmp_path / "in" / "bad.png", error="bad.png: truncated")
    summary = exporter.finish()
    assert summary == {"images": 2, "masks_written": 1, "errors": 1, "kept_existing": 0, "corrected_masks": 0}
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), mask)
    np.testing.assert_allclose(np.load(tmp_path / "scores" / "a.npy"), score, atol=1e-3)
    provenance = json.loads((tmp_path / PROVENANCE_NAME).read_text())
    assert provenance["rule_set"] == "ours" and provenance["lrpseg_version"]
    report = json.loads((tmp_path / REPORT_NAME).read_text())
    assert report["images"][1]["error"] == "bad.png: truncated"
    coco = json.loads((tmp_path / COCO_NAME).read_text())
    np.testing.assert_array_equal(rle_decode(coco["annotations"][0]["segmentation"]), mask)
    assert coco["annotations"][0]["bbox"] == [3, 2, 6, 3]


def test_existing_masks_are_kept_unless_overwrite(tmp_path):
    (tmp_path / "a.png").write_bytes(b"user's precious mask")
    mask = np.ones((4, 4), dtype=bool)
    exporter = Exporter(tmp_path, write_scores=False)
    record = exporter.add(tmp_path / "a.png", mask, probability=0.9)
    exporter.finish()
    assert record.kept_existing == ["a.png"] and record.mask is None
    assert (tmp_path / "a.png").read_bytes() == b"user's precious mask"
    Exporter(tmp_path, overwrite=True, write_scores=False).add(tmp_path / "a.png", mask, probability=0.9)
    assert read_mask(tmp_path / "a.png").all()


def test_same_stem_in_two_folders_gets_two_files(tmp_path):
    exporter = Exporter(tmp_path / "out", write_scores=False)
    first = exporter.add(tmp_path / "damaged" / "x.png", np.ones((3, 3), bool), probability=0.9)
    second = exporter.add(tmp_path / "undamaged" / "x.png", np.zeros((3, 3), bool), probability=0.1)
    assert first.mask != second.mask
    assert read_mask(tmp_path / "out" / first.mask).all()
    assert not read_mask(tmp_path / "out" / second.mask).any()


def test_coco_file_names_are_paths_relative_to_the_image_folder(tmp_path):
    mask = np.ones((3, 3), dtype=bool)
    exporter = Exporter(tmp_path / "out", write_scores=False, write_coco=True, root=tmp_path / "images")
    exporter.add(tmp_path / "images" / "a" / "x.png", mask, probability=0.9)
    exporter.add(tmp_path / "images" / "b" / "x.png", mask, probability=0.9)
    exporter.finish()
    coco = json.loads((tmp_path / "out" / COCO_NAME).read_text())
    assert [image["file_name"] for image in coco["images"]] == ["a/x.png", "b/x.png"]


def test_provenance_lists_the_overrides_of_the_masks_written_by_this_run_only(tmp_path):
    from lrpseg.core.export_run import ExportOptions, MaskExport
    from lrpseg.core.pipeline import Outcome

    class Stub:  # the parts of an Analysis an export reads
        probability, threshold = 0.9, 0.5
        segmentation = type("Seg", (), {"score": np.full((2, 2), 0.7, np.float32)})()

        def mask_at(self, threshold):
            return self.segmentation.score >= threshold

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kept.png").write_bytes(b"existing")
    overrides = {"written.png": 0.6, "kept.png": 0.4, "not-in-this-run.png": 0.3}
    export = MaskExport(tmp_path / "out", {}, ExportOptions(write_scores=False), overrides, root=tmp_path)
    export.export_one(Outcome(tmp_path / "written.png", analysis=Stub()))
    export.export_one(Outcome(tmp_path / "kept.png", analysis=Stub()))
    export.finish()
    provenance = json.loads((tmp_path / "out" / PROVENANCE_NAME).read_text())
    assert provenance["threshold_overrides"] == {"written.png": 0.6}
    assert provenance["threshold"] == "segmenter default"


def test_an_export_removes_the_temporaries_a_killed_export_left(tmp_path):
    out = tmp_path / "out"
    (out / "scores").mkdir(parents=True)
    stale = [out / ".crack.png.k3j2x.tmp", out / "scores" / ".crack.npy.q8w1e.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    (out / "crack.png").write_bytes(b"a user's mask")
    Exporter(out)
    assert not any(path.exists() for path in stale)
    assert (out / "crack.png").read_bytes() == b"a user's mask"
