"""Two views: the map of each image averaged with the map of the image turned by 180° (core.lrp.VIEWS)."""

import json

import numpy as np
import pytest
import torch
from lrpseg.core.checkpoint import save_checkpoint
from lrpseg.core.cli import main
from lrpseg.core.export_layout import SCORES_DIR
from lrpseg.core.lrp import DEFAULT_VIEWS, explain
from lrpseg.core.models import build_vgg_a
from lrpseg.core.relevance_cache import relevance_cache_key

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_vgg_a("128n", width=0.125, input_size=64).eval()


def turned(array):
    return np.flip(array, axis=(-2, -1))


def test_two_views_average_the_map_of_the_image_and_of_the_turned_image_turned_back(model):
    x = torch.randn(2, 3, 64, 64)
    one = explain(model, x, rule_set="epsilon_plus", views=1)
    other = explain(model, x.flip(-2, -1), rule_set="epsilon_plus", views=1)
    two = explain(model, x, rule_set="epsilon_plus", views=2)
    np.testing.assert_allclose(two.relevance, (one.relevance + turned(other.relevance)) / 2, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(two.logits, one.logits)  # the decision is the image's own
    assert (two.views, one.views) == (2, 1)


@pytest.mark.parametrize("rule_set", ["epsilon_plus", "ours"])
def test_two_view_maps_turn_with_the_image_where_one_view_does_not(model, rule_set):
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)

    def gap(views):
        upright = explain(model, x, rule_set=rule_set, dtype=torch.float64, views=views).relevance
        upside_down = explain(model, x.flip(-2, -1), rule_set=rule_set, dtype=torch.float64, views=views).relevance
        return np.abs(turned(upside_down) - upright).max() / np.abs(upright).max()

    assert gap(1) > 1e-3  # LRP through max-pool winners and padding is tied to the input's orientation
    assert gap(2) < 1e-9


def test_only_one_or_two_views(model):
    with pytest.raises(ValueError, match="views"):
        explain(model, torch.randn(1, 3, 64, 64), views=4)


def test_cache_keys_tell_the_views_apart_and_keep_single_view_keys():
    assert relevance_cache_key("ours", "wta", "crop", "logodds", 1) == "ours|wta|crop|logodds"
    assert relevance_cache_key("ours", "wta", "crop", "logodds", 2) != "ours|wta|crop|logodds"
    assert relevance_cache_key("ours", "wta", "crop") == relevance_cache_key("ours", "wta", "crop", views=DEFAULT_VIEWS)


def test_segment_uses_and_records_the_views_asked_for(tmp_path, model):
    main(["demo", str(tmp_path / "d"), "--damaged", "2", "--undamaged", "2", "--size", "64"])
    with torch.no_grad():  # every image called damaged, so every image gets a score map
        model.classifier.fc3.bias.copy_(torch.tensor([0.0, 20.0]))
    save_checkpoint(tmp_path / "m.safetensors", model)
    images = tmp_path / "d" / "images"
    sources = {"folder": [str(images)], "project": ["--project", str(images)]}
    for source, where in sources.items():
        scores = {}
        for views in (None, "1", "2"):
            out = tmp_path / f"{source}{views}"
            flags = [] if views is None else ["--views", views]
            assert main(["segment", *where, "--model", str(tmp_path / "m.safetensors"), "--out", str(out),
                         *flags]) == 0
            assert json.loads((out / "provenance.json").read_text())["views"] == int(views or DEFAULT_VIEWS)
            scores[views] = [np.load(path) for path in sorted((out / SCORES_DIR).rglob("*.npy"))]
        assert len(scores["1"]) == 4
        assert all(np.array_equal(a, b) for a, b in zip(scores[None], scores[str(DEFAULT_VIEWS)], strict=True))
        assert not any(np.array_equal(a, b) for a, b in zip(scores["1"], scores["2"], strict=True)), source
