"""Sharpened mixtures: the paper's GMM or BMM fit, then every pixel also judged on its own relevance.

The paper fits its mixtures to relevance averaged over 5×5 pixels. The average finds damage reliably but
widens a crack of 1-3 pixels to the filter's width, and the masks lose most of their precision there. A
sharpened segmenter keeps the paper's fit and score, evaluates the same fitted damage posterior on each pixel's
own (unfiltered) relevance, and scores the pixel with the smaller of the two: a pixel is damage only when its
neighbourhood and the pixel itself are. Nothing is fitted twice; the threshold and the slider work on the one
score as before. BMM-sharp fits relevance compressed by an exponent (:data:`EXPONENTS`), so that a second,
weaker defect of an image is not lost to the one that decided.

Measured (issue 12; one classifier per data set, rule set ours, log-odds start), pooled IoU of the default
masks: demo folder of ``lrpseg demo --seed 0``, BMM 0.395 -> 0.467; Magnetic Tile test crops of the CPU
configuration, BMM 0.280 -> 0.304 (epsilon_plus rule set: 0.311 -> 0.328). Over seeds
(``benchmarks/train_reliability.py --also-segmenters``, held-out demo folders): +0.04 to +0.07 for each of 7
classifiers that trained, -0.001 and -0.012 for the 2 that did not (held-out balanced accuracy 0.55 and 0.45).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from lrpseg.core.segment import bmm, gmm
from lrpseg.core.segment.base import SegmentationResult, as_relevance, finish


def bmm_own_value_score(relevance: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The fitted BMM's damage posterior at each pixel's own relevance (0 below the kept values' minimum)."""
    r = as_relevance(relevance)
    kept = r > params["domain_offset"]
    y = np.clip((r[kept] - params["domain_offset"]) / params["domain_scale"], bmm.EPS, 1.0 - bmm.EPS)
    score = np.zeros(r.shape)
    score[kept] = bmm.damage_posterior(y, params["alpha"], params["beta"], params["weights"])
    return score


def gmm_own_value_score(relevance: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The fitted GMM's damage posterior at each pixel's own relevance."""
    r = as_relevance(relevance)
    x = (r / params["domain_scale"]).ravel()
    mixture = [np.asarray(params[key], dtype=np.float64) for key in ("weights", "means", "variances")]
    return gmm.posteriors(x, *mixture, params["damage_component"]).reshape(r.shape)


#: Sharpened segmenter name -> (the paper's segmenter, the same fit's posterior at each pixel's own relevance).
_PAPER: dict[str, tuple[Callable[..., SegmentationResult], Callable[..., np.ndarray]]] = {
    "bmm-sharp": (bmm.segment_bmm, bmm_own_value_score),
    "gmm-sharp": (gmm.segment_gmm, gmm_own_value_score),
}

#: Sharpened segmenter name -> the exponent of the relevance it fits (:func:`compress`). A classifier often puts
#: most relevance on the one defect that decided, and a weaker second defect of the same image then falls into
#: the background component; ``|r|^0.75`` narrows that gap. Measured (``benchmarks/sharp_exponent.py``,
#: RESULTS.md, issue 12, session 11), pooled IoU of 10 demo classifier/folder pairs: up to +0.053 on 8 (the app
#: path's folders 0-2: 0.522 / 0.411 / 0.503 -> 0.521 / 0.464 / 0.529), -0.001 on 2; Magnetic Tile 0.379 -> 0.381
#: (AP 0.479 -> 0.511). Exponents 0.5-0.6 were as good on the demo and worse on Magnetic Tile. GMM-sharp lost IoU
#: with every exponent below 1, so it keeps the relevance as is.
EXPONENTS: dict[str, float] = {"bmm-sharp": 0.75, "gmm-sharp": 1.0}


def compress(relevance: np.ndarray, exponent: float) -> np.ndarray:
    """Relevance with its magnitude raised to ``exponent`` and its sign kept: ``sign(r) * |r| ** exponent``.

    Parameters
    ----------
    relevance : np.ndarray
        Signed relevance (H, W), finite.
    exponent : float
        Above 0; 1 returns the relevance (as float64) unchanged.

    Returns
    -------
    np.ndarray
        float64 (H, W), ordered as the input (a monotone map), so every mask of a threshold on it is one of the
        input's.
    """
    r = as_relevance(relevance)
    if exponent == 1.0:
        return r
    return np.sign(r) * np.abs(r) ** exponent


def segment_sharp(
    name: str, relevance: np.ndarray, seed: int = 0, exponent: float | None = None, **options: Any
) -> SegmentationResult:
    """The paper's segmenter that ``name`` sharpens, then each pixel's score capped by the same fit's damage
    posterior at its own unfiltered relevance (``core.segment.SEGMENTERS`` binds ``name``).

    Parameters
    ----------
    name : {"bmm-sharp", "gmm-sharp"}
        The sharpened segmenter.
    relevance : np.ndarray
        Signed relevance (H, W), finite.
    seed : int
        As for the paper's segmenter.
    exponent : float, optional
        The exponent of :func:`compress`; default ``EXPONENTS[name]``.
    **options
        Passed to the paper's segmenter.

    Returns
    -------
    SegmentationResult
        The paper's result on the relevance compressed with ``exponent`` (:func:`compress`), with
        ``score = min(its score, own-value posterior)``, ``params["sharpened"] = True``, ``params["exponent"]``
        and ``method = name``; degenerate maps (no mixture to ask) as the paper's segmenter gives them.
    """
    paper_segmenter, own_value_score = _PAPER[name]
    exponent = EXPONENTS[name] if exponent is None else float(exponent)
    fitted = compress(relevance, exponent)
    result = paper_segmenter(fitted, seed=seed, **options)
    params = {**result.params, "exponent": exponent}
    if result.params["degenerate"]:
        return dataclasses.replace(result, method=name, params=params)
    score = np.minimum(result.score, own_value_score(fitted, result.params))
    return finish(score, result.threshold, {**params, "sharpened": True}, name)
