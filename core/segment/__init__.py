"""Segmenters: relevance map -> score map in [0, 1], default threshold, mask (paper §3.3.2).

``SEGMENTERS`` maps a name to a function ``(relevance, seed=0, **options) -> SegmentationResult``; the CLI
and the GUI read their choices from it: the paper's three, and GMM and BMM sharpened (:mod:`.sharp`: each
pixel also judged on its own relevance, so thin damage stays thin). ``segment`` is the one entry point;
``component_densities`` and ``domain_values`` give a GUI what it needs to draw a fit over a histogram of the
values it was fitted to.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
from lrpseg.core.segment import bmm, gmm, sharp, simple
from lrpseg.core.segment.base import (
    FILTER_BORDER,
    FILTER_SIZE,
    FIT_MAX_SAMPLES,
    SegmentationResult,
    score_to_uint8,
)

__all__ = [
    "DEFAULT_SEGMENTER",
    "FILTER_BORDER",
    "FILTER_SIZE",
    "FIT_MAX_SAMPLES",
    "SEGMENTERS",
    "SegmentationResult",
    "component_densities",
    "domain_values",
    "score_to_uint8",
    "segment",
    "segmenter_provenance",
]

SEGMENTERS: dict[str, Callable[..., SegmentationResult]] = {
    "simple": simple.segment_simple,
    "gmm": gmm.segment_gmm,
    "bmm": bmm.segment_bmm,
    "gmm-sharp": functools.partial(sharp.segment_sharp, "gmm-sharp"),
    "bmm-sharp": functools.partial(sharp.segment_sharp, "bmm-sharp"),
}

#: The product's segmenter: the paper's BMM fit, sharpened. On held-out demo folders it raised pooled IoU over the
#: paper's BMM by 0.04-0.07 for every classifier that trained (7 runs of ``benchmarks/train_reliability.py``,
#: RESULTS.md, issue 12) and lost up to 0.012 for the two that did not; on Magnetic Tile 0.280 -> 0.304. The
#: paper's segmenters stay selectable by name.
DEFAULT_SEGMENTER = "bmm-sharp"

#: The module that fits each segmenter's model (a sharpened segmenter shows its paper segmenter's fit).
_MODULES = {"simple": simple, "gmm": gmm, "bmm": bmm, "gmm-sharp": gmm, "bmm-sharp": bmm}


def _module(method: str):
    try:
        return _MODULES[method]
    except KeyError:
        raise ValueError(f"unknown segmenter {method!r}; choose one of {sorted(SEGMENTERS)}") from None


def segment(
    relevance: np.ndarray, method: str = DEFAULT_SEGMENTER, seed: int = 0, **options: Any
) -> SegmentationResult:
    """Turn a relevance map into a score map, a default threshold and a mask.

    Parameters
    ----------
    relevance : np.ndarray
        Signed relevance (H, W), finite (any real dtype).
    method : {"simple", "gmm", "bmm", "gmm-sharp", "bmm-sharp"}
        Segmenter name (a key of ``SEGMENTERS``).
    seed : int
        Seed for everything random in the method (GMM's k-means start, fit subsamples of huge maps); a fixed
        seed gives identical results.
    **options
        Method-specific keywords (e.g. ``max_iter``, ``tol``); see the segmenter functions.

    Returns
    -------
    SegmentationResult
        ``score`` float32 (H, W) in [0, 1], ``threshold``, ``mask`` (= score >= threshold), JSON-serialisable
        ``params`` (with ``domain``, ``domain_offset``, ``domain_scale``, ``iterations``, ``converged``,
        ``degenerate``), ``method``.

    Raises
    ------
    ValueError
        Unknown method, or a relevance map that is not a finite 2-D real array.
    """
    _module(method)
    return SEGMENTERS[method](relevance, seed=seed, **options)


def component_densities(result: SegmentationResult, x: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted densities of the fitted components at ``x``, in the units of ``result.params["domain"]``.

    Draw them over a density-normalised histogram of ``domain_values(relevance, result.method)``; their sum
    is the fitted mixture. The domain maps back to (filtered) relevance as
    ``params["domain_offset"] + params["domain_scale"] * x``.

    Parameters
    ----------
    result : SegmentationResult
        Output of ``segment``.
    x : np.ndarray
        Points in the domain (GMM: [-1, 1], BMM: (0, 1)).

    Returns
    -------
    dict of str to np.ndarray
        GMM: "background 1", "background 2", "damage" (in order of the component means); BMM: "background",
        "damage". Empty for "simple" (no densities) and for degenerate fits.
    """
    if result.method == "simple":
        return {}
    return _module(result.method).component_densities(result.params, x)


def domain_values(relevance: np.ndarray, method: str) -> np.ndarray:
    """The 1-D values a method fits its model to, in its ``params["domain"]`` units (for histograms).

    Parameters
    ----------
    relevance : np.ndarray
        Signed relevance (H, W), finite.
    method : {"simple", "gmm", "bmm", "gmm-sharp", "bmm-sharp"}
        Segmenter name.

    Returns
    -------
    np.ndarray
        float64 1-D. simple: the normalised relevance (= score) of every pixel; gmm: the scaled filtered
        relevance of every pixel; bmm: the normalised values of the kept upper half only; a sharpened
        segmenter: its paper segmenter's values of the relevance it fits (:func:`.sharp.compress`).
    """
    module = _module(method)
    if method in sharp.EXPONENTS:  # a sharpened segmenter fits compressed relevance
        relevance = sharp.compress(relevance, sharp.EXPONENTS[method])
    if method == "simple":
        res = simple.segment_simple(relevance)
        return res.score.astype(np.float64).ravel() if res.params["degenerate"] is None else np.empty(0)
    return module.domain_values(relevance)


def segmenter_provenance(method: str) -> dict[str, Any]:
    """What an export's provenance records about a segmenter: its name and the exponent of the relevance it
    fits (1 for the paper's segmenters; :data:`.sharp.EXPONENTS` for the sharpened ones)."""
    _module(method)
    return {"segmenter": method, "relevance_exponent": sharp.EXPONENTS.get(method, 1.0)}
