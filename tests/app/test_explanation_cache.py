"""LRP runs once per image, model and rule set: a segmenter switch re-segments the explanation in memory, and a
window opened again on the same folder and model segments the relevance stored in the project's cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from lrpseg.core import pipeline
from lrpseg.core.lrp import DEFAULT_RULE_SET
from lrpseg.core.relevance_cache import RelevanceCache, model_grid_shape, relevance_cache_key
from lrpseg.core.segment import DEFAULT_SEGMENTER


@pytest.fixture
def lrp_calls(monkeypatch):
    """Counts calls of ``core.lrp.explain`` made by the pipeline (on any thread)."""
    calls = []
    lock = threading.Lock()
    original = pipeline.explain

    def counting(*args, **kwargs):
        with lock:
            calls.append(kwargs.get("rule_set"))
        return original(*args, **kwargs)

    monkeypatch.setattr(pipeline, "explain", counting)
    return calls


def _wait_analysis(window, qtbot, segmenter, rule_set=DEFAULT_RULE_SET):
    qtbot.waitUntil(lambda: (a := window.current_analysis()) is not None and a.segmenter == segmenter
                    and a.rule_set == rule_set, timeout=30000)
    return window.current_analysis()


def test_segmenter_switch_does_not_rerun_lrp(make_window, demo_folder, slim_checkpoint, qtbot, wait_idle,
                                             lrp_calls, use_checkpoint):
    use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    first = _wait_analysis(window, qtbot, DEFAULT_SEGMENTER)
    wait_idle(window)  # the look-ahead images are explained too
    explained_before = len(lrp_calls)
    assert explained_before >= 1

    ahead = window.list_model.rel_at(1)
    explained_ahead = window.analyses.peek(window.key(ahead))[0].explained

    window.panel.segmenter.setCurrentText("simple")
    second = _wait_analysis(window, qtbot, "simple")
    window.panel.segmenter.setCurrentText("gmm")
    third = _wait_analysis(window, qtbot, "gmm")
    wait_idle(window)  # the look-ahead images are re-segmented in the background
    assert len(lrp_calls) == explained_before
    assert second.explained is first.explained and third.explained is first.explained
    np.testing.assert_array_equal(second.relevance, first.relevance)
    assert second.probability == first.probability
    assert second.segmentation.method == "simple" and third.segmentation.method == "gmm"
    assert window.analyses.peek(window.key(ahead))[0].explained is explained_ahead

    window.step(1)  # shown at once from the look-ahead; one more image enters the look-ahead and is explained
    assert window.current_analysis().segmenter == "gmm"
    wait_idle(window)
    assert len(lrp_calls) == explained_before + 1

    window.panel.rule_set.setCurrentText("montavon")  # another rule set is another explanation
    _wait_analysis(window, qtbot, "gmm", rule_set="montavon")
    wait_idle(window)
    assert "montavon" in lrp_calls[explained_before:]


def test_reopened_window_uses_cached_relevance(make_window, demo_folder, slim_checkpoint, qtbot, wait_idle,
                                               lrp_calls, use_checkpoint):
    use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    rel = window.current
    first = _wait_analysis(window, qtbot, DEFAULT_SEGMENTER)
    wait_idle(window)
    model_id, input_size = window.handle.model_id, window.handle.model.input_size
    key = relevance_cache_key(DEFAULT_RULE_SET, "wta", first.mode)
    stored = RelevanceCache(window.project).load(rel, model_id, key, (input_size, input_size))
    assert stored is not None  # written by the worker thread
    np.testing.assert_array_equal(stored[0], first.explained.relevance)
    assert stored[0].dtype == np.float32 and stored[1] == first.probability
    window.shutdown()
    explained_before = len(lrp_calls)

    again = make_window(demo_folder)
    qtbot.waitUntil(lambda: again.handle is not None, timeout=10000)
    assert again.current == rel
    second = _wait_analysis(again, qtbot, DEFAULT_SEGMENTER)
    wait_idle(again)
    assert len(lrp_calls) == explained_before  # the current and the look-ahead images came from the cache
    np.testing.assert_array_equal(second.relevance, first.relevance)
    np.testing.assert_array_equal(second.segmentation.score, first.segmentation.score)
    assert second.probability == first.probability and second.mode == first.mode


def test_relevance_store_ignores_stale_or_misshapen_entries(demo_folder, slim_checkpoint):
    from lrpseg.core.checkpoint import load_checkpoint
    from lrpseg.core.images import read_image
    from lrpseg.core.project import Project

    model, _ = load_checkpoint(slim_checkpoint)
    with Project.open(demo_folder) as project:
        rel = project.images()[0]
        image = read_image(demo_folder / rel)
        explained = pipeline.explain_image(model, image, "ours", "wta", "crop")
        store = RelevanceCache(project)
        key = relevance_cache_key("ours", "wta", "crop")
        shape = model_grid_shape(image.shape, model.input_size, "crop")
        assert shape == explained.relevance.shape
        assert store.load(rel, "m", key, shape) is None
        assert store.store(rel, "m", key, explained)
        relevance, probability = store.load(rel, "m", key, shape)
        np.testing.assert_array_equal(relevance, explained.relevance)
        assert probability == explained.probability
        assert store.load(rel, "m", key, (shape[0] + 1, shape[1])) is None  # not this grid
        assert store.load(rel, "other-model", key, shape) is None
        assert store.load(rel, "m", relevance_cache_key("ours", "avg", "crop"), shape) is None
        (demo_folder / rel).write_bytes((demo_folder / rel).read_bytes() + b"\0")  # the file changed
        assert store.load(rel, "m", key, shape) is None
    strip = np.zeros((40, 120), np.uint8)  # tiled: upscaled to a short side of 64
    tiled = pipeline.explain_image(model, strip, "ours", "wta", "tile")
    assert model_grid_shape(strip.shape, model.input_size, "tile") == tiled.relevance.shape == (64, 192)
