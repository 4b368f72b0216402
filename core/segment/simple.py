"""Simple: iterative mean thresholding of the affinely normalised relevance (paper §3.3.2, Umbaugh 2017).

The relevance is mapped to [0, 1] (min -> 0, max -> 1, no filtering). Starting from the mean, the threshold
becomes the average of the mean above it (``x > t``) and the mean at or below it (``x <= t``) until it stops
moving, i.e. until the split no longer changes (capped at ``max_iter`` rounds). The score is the normalised
relevance itself, so the PR curve of "simple" is the curve of the normalised relevance (paper §4).
"""

from __future__ import annotations

import numpy as np
from lrpseg.core.segment.base import SegmentationResult, as_relevance, degenerate_result, finish

METHOD = "simple"
DOMAIN = "normalised relevance: (r - min) / (max - min), equal to the score"


def normalise(relevance: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Map a finite relevance map affinely to [0, 1].

    Parameters
    ----------
    relevance : np.ndarray
        float64 (H, W), finite, not constant.

    Returns
    -------
    x : np.ndarray
        float64 (H, W), min 0 and max 1.
    offset, scale : float
        ``relevance == offset + scale * x`` (up to rounding).
    """
    lo = float(relevance.min())
    hi = float(relevance.max())
    span = hi - lo
    if np.isfinite(span):
        return (relevance - lo) / span, lo, span
    # hi - lo overflows only for values near the float64 limit: shrink first.
    big = max(abs(lo), abs(hi))
    x = relevance / big
    xlo = float(x.min())
    xspan = float(x.max()) - xlo
    return (x - xlo) / xspan, lo, xspan * big


def iterative_threshold(x: np.ndarray, max_iter: int = 100) -> tuple[float, int, bool, float, float]:
    """Find the fixed point of ``t = (mean(x > t) + mean(x <= t)) / 2`` starting at ``t = mean(x)``.

    Parameters
    ----------
    x : np.ndarray
        Values in [0, 1] with min 0 and max 1 (so both classes stay non-empty).
    max_iter : int
        Most updates of ``t``.

    Returns
    -------
    t : float
        Final threshold.
    iterations : int
        Updates made.
    converged : bool
        True when the last update left ``t`` unchanged.
    mean_low, mean_high : float
        Class means at the final split.
    """
    flat = x.ravel()
    total = float(flat.sum())
    t = total / flat.size
    mean_low = mean_high = t
    for iteration in range(1, max_iter + 1):
        upper = flat > t
        n_high = int(np.count_nonzero(upper))
        sum_high = float(flat.sum(where=upper))
        mean_high = sum_high / n_high
        mean_low = (total - sum_high) / (flat.size - n_high)
        t_new = 0.5 * (mean_low + mean_high)
        if t_new == t:
            return t, iteration, True, mean_low, mean_high
        t = t_new
    return t, max_iter, False, mean_low, mean_high


def segment_simple(relevance: np.ndarray, seed: int = 0, max_iter: int = 100) -> SegmentationResult:
    """Segment with the iterative mean threshold of the normalised relevance.

    Parameters
    ----------
    relevance : np.ndarray
        Signed relevance (H, W), finite.
    seed : int
        Unused (the method is deterministic); accepted so every segmenter has the same signature.
    max_iter : int
        Cap on threshold updates.

    Returns
    -------
    SegmentationResult
        ``score`` = normalised relevance, ``threshold`` = converged t. A constant map gives a zero score
        and an empty mask (``params["degenerate"]`` says so). ``params``: ``domain``, ``domain_offset`` and
        ``domain_scale`` (relevance = offset + scale * score), ``iterations``, ``converged``, ``class_means``
        (mean score at or below and above the threshold).

    Raises
    ------
    ValueError
        If the map is not a finite 2-D real array.
    """
    del seed
    r = as_relevance(relevance)
    lo, hi = float(r.min()), float(r.max())
    if lo == hi:
        return degenerate_result(r.shape, METHOD, "constant relevance map", domain=DOMAIN,
                                 domain_offset=lo, domain_scale=0.0)
    x, offset, scale = normalise(r)
    t, iterations, converged, mean_low, mean_high = iterative_threshold(x, max_iter)
    params = {
        "domain": DOMAIN,
        "domain_offset": offset,
        "domain_scale": scale,
        "iterations": iterations,
        "converged": converged,
        "class_means": [mean_low, mean_high],
    }
    return finish(x, t, params, METHOD)
