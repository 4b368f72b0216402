"""GMM: a three-component 1-D Gaussian mixture on the mean-filtered relevance (paper §3.3.2 and §4).

Steps: 5x5 mean filter (``base.mean_filter``), divide by the largest absolute filtered value (so the fit is
invariant to positive scaling of the relevance and sklearn's absolute ``reg_covar`` = 1e-6 means the same on
every map), fit three components to all values, name "damage" the component with the largest responsibility
at the maximal value, and score every pixel with that component's posterior; default threshold 0.5.

The fit is scikit-learn's ``GaussianMixture(n_components=3, covariance_type="full", init_params="kmeans",
random_state=seed, tol=1e-3, reg_covar=1e-6, max_iter=100)`` algorithm: the initial responsibilities are the
labels of sklearn's own ``KMeans(n_clusters=3, n_init=1, random_state=RandomState(seed))`` (exactly what
sklearn does), and the EM steps, the stopping rule (change of the mean log-likelihood < tol), the final
parameters and the posteriors (sklearn's log-sum-exp) are reproduced in numpy on a (3, N) layout, because
sklearn's (N, 3) row-wise log-sum-exp made the fit 3-4x slower than our 30 ms budget at 224². The test suite
checks the result against ``sklearn.mixture.GaussianMixture`` itself; pass ``engine="sklearn"`` to run it.

Saturation (paper §4). The two background components are narrow, so for moderately large values their
weighted densities fall below 2^-53 of the damage component's and the float64 posterior is exactly 1.0.
Such pixels cannot be told apart by any threshold: the PR curve runs flat from there. This is kept, not
hidden; ``params["n_saturated"]`` counts the pixels whose float64 posterior is exactly 1.0.
"""

from __future__ import annotations

import warnings

import numpy as np
from lrpseg.core.segment.base import (
    FIT_MAX_SAMPLES,
    SegmentationResult,
    as_relevance,
    degenerate_result,
    finish,
    fit_sample,
    mean_filter,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

METHOD = "gmm"
DOMAIN = "mean-filtered relevance / max |mean-filtered relevance|"
N_COMPONENTS = 3
REG_COVAR = 1e-6
_LOG_2PI = float(np.log(2.0 * np.pi))
_CHUNK = 1 << 20
_EPS10 = 10.0 * np.finfo(np.float64).eps


def _kmeans_labels(x: np.ndarray, seed: int, max_iter: int = 300, tol: float = 1e-4) -> np.ndarray:
    """Labels of sklearn's ``KMeans(n_clusters=3, n_init=1, random_state=RandomState(seed)).fit(x)``.

    The same steps in 1-D numpy: centre the data, sklearn's k-means++ seeding with the same random stream
    (``_kmeans_plusplus``), Lloyd iterations until the labels stop changing or the squared centre shift is at
    most ``tol`` times the data variance, then a final assignment. sklearn's own Lloyd took 15-30 ms at 224²
    (per-chunk BLAS and thread start-up for a 1-D problem); this takes about 3 ms. Labels can differ only for
    values equidistant from two centres up to rounding, or when a cluster empties (sklearn relocates it,
    this keeps its centre).
    """
    xc = x - x.mean()
    centers = _kmeans_plusplus(xc, N_COMPONENTS, np.random.RandomState(seed))
    tol_abs = float(xc.var()) * tol
    total = float(xc.sum())
    previous = None
    for _ in range(max_iter):
        # In 1-D the clusters are intervals: {x > m1} and {x > m2} for the midpoints m1 < m2 of the sorted
        # centres. Equal counts mean equal sets, so "labels unchanged" needs no label array.
        order = np.argsort(centers, kind="stable")
        c = centers[order]
        upper1, upper2 = xc > 0.5 * (c[0] + c[1]), xc > 0.5 * (c[1] + c[2])
        n1, n2 = int(np.count_nonzero(upper1)), int(np.count_nonzero(upper2))
        s1, s2 = float(xc.sum(where=upper1)), float(xc.sum(where=upper2))
        counts = np.array([xc.size - n1, n1 - n2, n2], dtype=np.float64)
        sums = np.array([total - s1, s1 - s2, s2])
        new = centers.copy()
        filled = counts > 0
        new[order[filled]] = sums[filled] / counts[filled]
        shift = float(np.square(new - centers).sum())
        centers = new
        state = (order.tolist(), n1, n2)
        if state == previous:
            break
        if shift <= tol_abs:
            break
        previous = state
    return _nearest(xc, centers)


def _kmeans_plusplus(x: np.ndarray, n_clusters: int, random_state: np.random.RandomState) -> np.ndarray:
    """sklearn's greedy k-means++ seeding (``sklearn.cluster.kmeans_plusplus``) for 1-D values, same draws.

    Squared distances are ``(x - c)^2`` rather than sklearn's ``x^2 - 2xc + c^2``, which can only matter when
    a random draw falls within rounding of a cumulative-sum boundary.
    """
    n = x.size
    n_local_trials = 2 + int(np.log(n_clusters))
    # random_state.choice(n, p=uniform) without its checks of p: the same cumulative sum and draw.
    cdf = np.full(n, 1.0 / n).cumsum()
    cdf /= cdf[-1]
    first = int(cdf.searchsorted(random_state.random_sample(), side="right"))
    centers = np.empty(n_clusters)
    centers[0] = x[first]
    closest = np.square(x - x[first])
    potential = closest.sum()
    for c in range(1, n_clusters):
        draws = random_state.uniform(size=n_local_trials) * potential
        candidates = np.minimum(np.searchsorted(np.cumsum(closest), draws), n - 1)
        dist = np.square(x - x[candidates][:, None])
        np.minimum(closest, dist, out=dist)
        potentials = dist.sum(axis=1)
        best = int(np.argmin(potentials))
        potential = potentials[best]
        closest = dist[best]
        centers[c] = x[candidates[best]]
    return centers


def _nearest(x: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest centre for 1-D values: two comparisons against the midpoints of sorted centres."""
    order = np.argsort(centers, kind="stable")
    c = centers[order]
    slot = (x > 0.5 * (c[0] + c[1])).astype(np.intp)
    slot += x > 0.5 * (c[1] + c[2])
    return order[slot]


def _gaussian_parameters(x: np.ndarray, x2: np.ndarray,
                         resp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sklearn's ``_estimate_gaussian_parameters`` for 1-D data x (x2 = x^2) and resp (K, N).

    The variance comes from raw moments, sum r x^2 / n - mean^2: on values in [-1, 1] with variances of at
    least ``REG_COVAR`` the cancellation costs at most ~1e-10 relative and saves a pass per component.
    einsum rather than BLAS products: threaded BLAS stalls for milliseconds per call on a busy CPU.
    """
    nk = resp.sum(axis=1) + _EPS10
    means = np.einsum("kn,n->k", resp, x) / nk
    variances = np.maximum(np.einsum("kn,n->k", resp, x2) / nk - means * means, 0.0) + REG_COVAR
    return nk, means, variances


def _log_weighted(x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """log(w_k N(x; mu_k, var_k)) shaped (K, N), written as sklearn writes it (via the precision Cholesky)."""
    prec_chol = 1.0 / np.sqrt(variances)
    lp = np.multiply.outer(prec_chol, x)
    lp -= (means * prec_chol)[:, None]
    np.square(lp, out=lp)
    lp *= -0.5
    lp += (np.log(prec_chol) - 0.5 * _LOG_2PI + np.log(weights))[:, None]
    return lp


def _log_resp(x: np.ndarray, weights: np.ndarray, means: np.ndarray,
              variances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample log-likelihood and log responsibilities (K, N), computed exactly as sklearn does.

    Used for the reported posteriors, so their saturation at exactly 1.0 is sklearn's.
    """
    lp = _log_weighted(x, weights, means, variances)
    # sklearn's _logsumexp: log1p(sum of the non-maximal terms / count of maximal ones).
    top = lp.max(axis=0)
    is_top = lp == top
    shifted = np.exp(lp - top)
    np.copyto(shifted, 0.0, where=is_top)
    n_top = is_top.sum(axis=0)
    log_norm = np.log1p(shifted.sum(axis=0) / n_top)
    if n_top.max() > 1:
        log_norm += np.log(n_top)
    log_norm += top
    lp -= log_norm
    return log_norm, lp


def fit_gmm(x: np.ndarray, seed: int = 0, tol: float = 1e-3, max_iter: int = 100) -> dict:
    """Fit sklearn's 3-component GaussianMixture algorithm (k-means init) to 1-D values.

    Parameters
    ----------
    x : np.ndarray
        1-D float64 values with at least three distinct values.
    seed : int
        ``random_state`` of the k-means initialisation.
    tol : float
        Stop when the mean log-likelihood changes by less than this.
    max_iter : int
        Most EM iterations.

    Returns
    -------
    dict
        ``weights``, ``means``, ``variances`` (np.ndarray, K), ``iterations``, ``converged``,
        ``lower_bound`` (mean log-likelihood of the last E-step).
    """
    labels = _kmeans_labels(x, seed)
    resp = (labels == np.arange(N_COMPONENTS)[:, None]).astype(np.float64)
    x2 = x * x
    weights, means, variances = _gaussian_parameters(x, x2, resp)
    weights /= x.size
    lower_bound = -np.inf
    converged = False
    iterations = 0
    for iteration in range(1, max_iter + 1):
        iterations = iteration
        previous = lower_bound
        # E-step as exp(lp - max) / sum: equal to sklearn's exp(log_resp) up to rounding, one exp fewer.
        resp = _log_weighted(x, weights, means, variances)
        top = resp.max(axis=0)
        resp -= top
        np.exp(resp, out=resp)
        total = resp.sum(axis=0)
        resp /= total
        weights, means, variances = _gaussian_parameters(x, x2, resp)
        weights /= weights.sum()
        lower_bound = float(np.mean(top + np.log(total)))
        if abs(lower_bound - previous) < tol:
            converged = True
            break
    return {"weights": weights, "means": means, "variances": variances, "iterations": iterations,
            "converged": converged, "lower_bound": lower_bound}


def _fit_gmm_sklearn(x: np.ndarray, seed: int, tol: float, max_iter: int) -> dict:
    """The same fit done by ``sklearn.mixture.GaussianMixture`` itself (reference and fallback).

    Its ConvergenceWarning is silenced with ``warnings.catch_warnings``, which is not thread-safe; the
    default numpy engine warns about nothing and records ``converged`` instead.
    """
    gm = GaussianMixture(N_COMPONENTS, covariance_type="full", tol=tol, reg_covar=REG_COVAR,
                         max_iter=max_iter, init_params="kmeans", random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(x[:, None])
    return {"weights": gm.weights_.copy(), "means": gm.means_.ravel().copy(),
            "variances": gm.covariances_.ravel().copy(), "iterations": int(gm.n_iter_),
            "converged": bool(gm.converged_), "lower_bound": float(gm.lower_bound_)}


def posteriors(x: np.ndarray, weights: np.ndarray, means: np.ndarray, variances: np.ndarray,
               component: int) -> np.ndarray:
    """Posterior of one component for every value, float64, in chunks of 2^20 values.

    Parameters
    ----------
    x : np.ndarray
        1-D float64 values.
    weights, means, variances : np.ndarray
        Mixture parameters, shape (K,).
    component : int
        Index of the component whose posterior is returned.

    Returns
    -------
    np.ndarray
        float64, same length as ``x``; exactly 1.0 where the other components underflow (saturation).
    """
    out = np.empty_like(x)
    for start in range(0, x.size, _CHUNK):
        stop = min(start + _CHUNK, x.size)
        _, log_resp = _log_resp(x[start:stop], weights, means, variances)
        np.exp(log_resp[component], out=out[start:stop])
    return out


def domain_values(relevance: np.ndarray) -> np.ndarray:
    """The 1-D values the GMM is fitted to (before any subsampling), in ``params["domain"]`` units.

    Parameters
    ----------
    relevance : np.ndarray
        Signed relevance (H, W), finite.

    Returns
    -------
    np.ndarray
        float64 (H*W,): mean-filtered relevance divided by its largest absolute value (empty if all zero).
    """
    f = mean_filter(as_relevance(relevance))
    scale = float(np.abs(f).max())
    return (f / scale).ravel() if scale > 0 else np.empty(0)


def segment_gmm(relevance: np.ndarray, seed: int = 0, tol: float = 1e-3, max_iter: int = 100,
                fit_max_samples: int = FIT_MAX_SAMPLES, engine: str = "numpy") -> SegmentationResult:
    """Segment with the damage component's posterior of a 3-component Gaussian mixture.

    Parameters
    ----------
    relevance : np.ndarray
        Signed relevance (H, W), finite.
    seed : int
        Seed of the k-means initialisation (and of the fit subsample of maps above ``fit_max_samples``).
    tol, max_iter : float, int
        EM stopping rule (sklearn's meaning).
    fit_max_samples : int
        Larger maps fit on a seeded random subsample of this size; every pixel is scored.
    engine : {"numpy", "sklearn"}
        "numpy" (default) runs sklearn's algorithm in the faster (3, N) layout; "sklearn" calls
        ``GaussianMixture`` itself. Both give the same fit up to rounding.

    Returns
    -------
    SegmentationResult
        ``score`` = damage posterior, threshold 0.5. ``params``: ``domain``, ``domain_offset`` (0),
        ``domain_scale`` (filtered relevance = scale * domain value), ``weights``, ``means``, ``variances``
        (ascending means, domain units), ``damage_component``, ``component_names``, ``iterations``,
        ``converged``, ``lower_bound``, ``fit_samples``, ``n_saturated`` (float64 posterior exactly 1.0),
        ``saturated_fraction`` (of all pixels), ``degenerate``.
        Degenerate maps: no positive filtered value -> empty mask; two distinct filtered values -> the
        pixels at the larger value score 1 (the limit of the mixture), the rest 0.

    Raises
    ------
    ValueError
        If the map is not a finite 2-D real array, or ``engine`` is unknown.
    """
    if engine not in ("numpy", "sklearn"):
        raise ValueError(f"unknown GMM engine {engine!r}; choose 'numpy' or 'sklearn'")
    r = as_relevance(relevance)
    f = mean_filter(r)
    scale = float(np.abs(f).max())
    base = {"domain": DOMAIN, "domain_offset": 0.0, "domain_scale": scale}
    if not scale > 0 or float(f.max()) <= 0:
        return degenerate_result(r.shape, METHOD, "no positive relevance after the mean filter", **base)
    x = (f / scale).ravel()
    lo, hi = float(x.min()), float(x.max())
    if lo == hi:
        return degenerate_result(r.shape, METHOD, "constant relevance map", **base)
    if not np.any((x > lo) & (x < hi)):
        score = (x == hi).reshape(r.shape)
        params = {**base, "degenerate": "two distinct filtered values: the larger one is damage",
                  "iterations": 0, "converged": False, "n_saturated": int(np.count_nonzero(score)),
                  "saturated_fraction": float(np.count_nonzero(score)) / score.size}
        return finish(score, 0.5, params, METHOD)

    sample = fit_sample(x, seed, fit_max_samples)
    if sample is not x and not np.any((sample > sample.min()) & (sample < sample.max())):
        sample = x  # the subsample lost the third distinct value: fit everything
    fit = (fit_gmm if engine == "numpy" else _fit_gmm_sklearn)(sample, seed, tol, max_iter)
    order = np.argsort(fit["means"], kind="stable")
    weights, means, variances = fit["weights"][order], fit["means"][order], fit["variances"][order]
    at_max = [posteriors(np.array([hi]), weights, means, variances, k)[0] for k in range(N_COMPONENTS)]
    damage = int(np.argmax(at_max))
    post = posteriors(x, weights, means, variances, damage)
    n_saturated = int(np.count_nonzero(post == 1.0))
    names = [f"background {i + 1}" for i in range(N_COMPONENTS - 1)]
    names.insert(damage, "damage")
    params = {
        **base,
        "weights": weights.tolist(),
        "means": means.tolist(),
        "variances": variances.tolist(),
        "damage_component": damage,
        "component_names": names,
        "iterations": int(fit["iterations"]),
        "converged": bool(fit["converged"]),
        "lower_bound": float(fit["lower_bound"]),
        "fit_samples": int(sample.size),
        "n_saturated": n_saturated,
        "saturated_fraction": n_saturated / post.size,
        "engine": engine,
    }
    return finish(post.reshape(r.shape), 0.5, params, METHOD)


def component_densities(params: dict, x: np.ndarray) -> dict[str, np.ndarray]:
    """Weighted component densities ``w_k N(x; mu_k, var_k)`` in ``params["domain"]`` units.

    Parameters
    ----------
    params : dict
        ``SegmentationResult.params`` of a GMM fit.
    x : np.ndarray
        Points in the domain.

    Returns
    -------
    dict of str to np.ndarray
        One curve per component, keyed by ``params["component_names"]``; they sum to the mixture density,
        comparable with a density-normalised histogram of ``domain_values``. Empty for degenerate fits.
    """
    if "means" not in params:
        return {}
    x = np.asarray(x, dtype=np.float64)
    out = {}
    for name, w, m, v in zip(params["component_names"], params["weights"], params["means"],
                             params["variances"], strict=True):
        out[name] = w * np.exp(-0.5 * (x - m) ** 2 / v) / np.sqrt(2.0 * np.pi * v)
    return out
