"""Explanations kept in a project's cache, so LRP runs once per image, model, rule set and max-pool mode.

Each explanation is two entries of :meth:`lrpseg.core.project.Project.store_relevance`: the relevance map
(float32, on the model's grid) under :func:`relevance_cache_key` and its probability (one float64) under the same
key plus ``"|probability"``. The viewer, an export from the GUI and ``lrpseg segment --project`` all go through
:func:`explain_cached`, so whichever explains an image first saves the others the work.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from lrpseg.core.lrp import DEFAULT_VIEWS
from lrpseg.core.model_registry import LoadedModel
from lrpseg.core.pipeline import ExplainedImage, choose_mode, explain_image

__all__ = ["RelevanceCache", "explain_cached", "model_grid_shape", "relevance_cache_key"]

log = logging.getLogger(__name__)


def relevance_cache_key(
    rule_set: str, maxpool: str, mode: str, start: str = "logodds", views: int = DEFAULT_VIEWS
) -> str:
    """The key under which a project caches a relevance map, e.g. ``"ours|wta|crop|logodds|2views"``.

    The project keys maps by image, model and one string; the max-pool mode, the resolved coverage mode, where
    relevance starts and how many views were averaged change the map too, so they are part of that string (maps
    cached by versions that started from the raw logit have keys without the start, and single-view maps keys
    without the views, so neither is mistaken for a map of today's default).
    """
    key = f"{rule_set}|{maxpool}|{mode}|{start}"
    return key if views == 1 else f"{key}|{views}views"


def model_grid_shape(image_shape: tuple[int, ...], input_size: int, mode: str) -> tuple[int, int]:
    """Shape of the relevance map :func:`lrpseg.core.pipeline.explain_image` makes for an image (the
    segmenter's grid): the S×S crop, or the whole image upscaled so its short side is at least S."""
    if mode == "crop":
        return input_size, input_size
    height, width = image_shape[:2]
    scale = max(1.0, input_size / min(height, width))
    return round(height * scale), round(width * scale)


class RelevanceCache:
    """Reads and writes explanations in a project's relevance cache (from any thread).

    An entry that is missing, of the wrong shape, or stale (the project drops maps of changed files) counts as
    absent. Failures to write (locked or closed project, full disk) are logged and otherwise ignored: the cache
    only saves time.

    Parameters
    ----------
    project : lrpseg.core.project.Project
        The project whose cache is used.
    """

    def __init__(self, project: Any) -> None:
        self.project = project

    def load(self, rel: str, model_id: str, key: str, shape: tuple[int, int]) -> tuple[np.ndarray, float] | None:
        """``(relevance, probability)`` stored for ``rel``, or ``None``."""
        try:
            relevance = self.project.load_relevance(rel, model_id, key)
            probability = self.project.load_relevance(rel, model_id, f"{key}|probability")
        except Exception as error:  # a cache that cannot be read is a cache miss
            log.warning("relevance cache of %s unreadable: %s", rel, error)
            return None
        if relevance is None or probability is None or probability.size != 1:
            return None
        if relevance.shape != tuple(shape) or relevance.dtype != np.float32:
            return None
        return relevance, float(probability.reshape(-1)[0])

    def store(self, rel: str, model_id: str, key: str, explained: ExplainedImage) -> bool:
        """Store ``explained``'s relevance and probability; return whether it worked."""
        try:
            self.project.store_relevance(rel, model_id, f"{key}|probability",
                                         np.array([explained.probability], dtype=np.float64))
            self.project.store_relevance(rel, model_id, key, explained.relevance.astype(np.float32, copy=False))
        except Exception as error:
            log.warning("relevance of %s not cached: %s", rel, error)
            return False
        return True


def explain_cached(
    loaded: LoadedModel,
    image: np.ndarray,
    rel: str,
    rule_set: str,
    maxpool: str,
    cache: RelevanceCache | None,
    mode: str = "auto",
    start: str = "logodds",
    views: int = DEFAULT_VIEWS,
) -> ExplainedImage:
    """Explain one decoded image: from ``cache`` when stored there, else by LRP (then stored).

    Parameters
    ----------
    loaded : LoadedModel
        The classifier; its lock is held while LRP runs.
    image : numpy.ndarray
        The decoded image of ``rel``.
    rel : str
        The image's path relative to the project folder (the cache key).
    rule_set, maxpool, mode, start, views
        As for :func:`lrpseg.core.pipeline.explain_image`.
    cache : RelevanceCache or None
        Where explanations are looked up and stored (None: always run LRP, store nothing).
    """
    mode = choose_mode(image.shape, loaded.model.input_size, mode)
    key = relevance_cache_key(rule_set, maxpool, mode, start, views)
    cached = None
    if cache is not None:
        shape = model_grid_shape(image.shape, loaded.model.input_size, mode)
        cached = cache.load(rel, loaded.model_id, key, shape)
    with loaded.lock:
        explained = explain_image(loaded.model, image, rule_set, maxpool, mode, cached=cached, start=start,
                                  views=views)
    if cached is None and cache is not None:
        cache.store(rel, loaded.model_id, key, explained)
    return explained
