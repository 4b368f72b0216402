"""Glue between the window and ``core`` that needs no widgets: settings, model files, jobs' bodies.

Everything here is plain Python so it can run on worker threads and be tested without a window. It holds no
algorithm: it chooses which core function to call with which arguments and packs the results for display.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lrpseg.app.analysis import ModelHandle
from lrpseg.app.viewer import relevance_to_uint8, score_to_index
from lrpseg.core.cancel import CancelToken
from lrpseg.core.checkpoint import load_checkpoint
from lrpseg.core.export import Exporter, file_sha256
from lrpseg.core.images import ImageReadError, read_image
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.lrp import RULE_SETS
from lrpseg.core.pipeline import analyse
from lrpseg.core.segment import SEGMENTERS, component_densities, domain_values
from lrpseg.core.train import TrainConfig, train_to_checkpoint

DEFAULT_RULE_SET = "ours"
DEFAULT_SEGMENTER = "bmm"
MODELS_DIR = Path(".lrpseg") / "models"
MIN_PER_CLASS = 2
HISTOGRAM_BINS = 64


# --------------------------------------------------------------------------------------------- choices
def rule_set_choices() -> list[str]:
    """Rule-set names from :data:`core.lrp.RULE_SETS`, the paper's two first."""
    names = list(RULE_SETS)
    first = [n for n in ("ours", "montavon") if n in names]
    return first + [n for n in names if n not in first]


def segmenter_choices() -> list[str]:
    """Segmenter names from :data:`core.segment.SEGMENTERS` in the paper's order."""
    names = list(SEGMENTERS)
    first = [n for n in ("simple", "gmm", "bmm") if n in names]
    return first + [n for n in names if n not in first]


def setting(project, key: str, default: str, choices: Sequence[str]) -> str:
    """A stored choice, or ``default`` when missing or no longer offered."""
    value = project.get_setting(key, default)
    return value if value in choices else default


def override_key(rule_set: str, segmenter: str) -> str:
    """Key of per-image threshold overrides, e.g. ``"ours/bmm"``: a threshold belongs to a score map."""
    return f"{rule_set}/{segmenter}"


# --------------------------------------------------------------------------------------------- models
def model_path(project, root: Path) -> Path | None:
    """The project's model file (setting ``model_path``, relative to the folder when inside it)."""
    return project.model_path if project is not None else None


def model_id(path: Path | None) -> str | None:
    """A model's identity in the prediction cache: its file name without suffix."""
    return None if path is None else Path(path).stem


def load_model(path: Path, device: torch.device) -> ModelHandle:
    """Load a checkpoint onto ``device`` (raises :class:`core.checkpoint.CheckpointError`)."""
    model, metadata = load_checkpoint(path, map_location=device)
    return ModelHandle(
        model=model, model_id=model_id(path), path=Path(path), device=device, metadata=metadata
    )


# --------------------------------------------------------------------------------------------- training
def training_problem(labels: dict[str, str]) -> str | None:
    """Why the labels cannot train a model yet (``None`` when they can)."""
    damaged = sum(v == DAMAGED for v in labels.values())
    undamaged = sum(v == UNDAMAGED for v in labels.values())
    if damaged >= MIN_PER_CLASS and undamaged >= MIN_PER_CLASS:
        return None
    return (
        f"Training needs at least {MIN_PER_CLASS} damaged and {MIN_PER_CLASS} undamaged images; you have "
        f"labelled {damaged} damaged and {undamaged} undamaged. Press D or U on more images."
    )


def train_config(project, device: torch.device) -> TrainConfig:
    """:class:`core.train.TrainConfig` from the project setting ``train_config`` (a dict; unknown keys
    ignored) and the window's device."""
    stored = project.get_setting("train_config", {}) or {}
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in stored.items() if k in known})
    config.device = str(device)
    return config


def train(
    paths: Sequence[Path],
    labels: Sequence[str],
    config: TrainConfig,
    out: Path,
    device: torch.device,
    progress: Callable[[Any], None],
    cancel: CancelToken,
) -> ModelHandle:
    """Train and write ``out`` (only on success); return the new model's handle."""
    out.parent.mkdir(parents=True, exist_ok=True)
    result = train_to_checkpoint(paths, labels, config, out, progress, cancel)
    model = result.model.to(device).eval()
    metadata = {"training": result.summary, **model.config()}
    return ModelHandle(model=model, model_id=model_id(out), path=out, device=device, metadata=metadata)


# --------------------------------------------------------------------------------------------- export
@dataclass
class ExportPlan:
    """Everything an export job needs, fixed when it starts (the GUI may change its state meanwhile)."""

    root: Path
    rels: list[str]
    out_dir: Path
    handle: ModelHandle
    rule_set: str
    segmenter: str
    thresholds: dict[str, float] = field(default_factory=dict)
    cached: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = True
    maxpool: str = "wta"

    def provenance(self) -> dict:
        """Facts stored in ``provenance.json``."""
        path = self.handle.path
        return {
            "source_folder": str(self.root),
            "model": str(path) if path else self.handle.model_id,
            "model_sha256": file_sha256(path) if path and path.exists() else None,
            "model_config": self.handle.model.config(),
            "rule_set": self.rule_set,
            "segmenter": self.segmenter,
            "maxpool": self.maxpool,
            "threshold_overrides": dict(self.thresholds),
            "tool": "lrpseg-gui",
        }

    def run(self, progress: Callable[[Any], None], cancel: CancelToken) -> dict:
        """Analyse (or reuse cached analyses of) every image and write its mask; return the summary.

        Each image uses its own threshold (override, else the segmenter's default). Unreadable images are
        recorded in the report instead of stopping the export.
        """
        exporter = Exporter(self.out_dir, provenance=self.provenance(), overwrite=self.overwrite)
        total = len(self.rels)
        for done, rel in enumerate(self.rels, start=1):
            cancel.raise_if_cancelled()
            path = self.root / rel
            analysis = self.cached.get(rel)
            if analysis is None:
                try:
                    image = read_image(path)
                except ImageReadError as error:
                    exporter.add(path, error=str(error))
                    progress((done, total, rel))
                    continue
                with self.handle.lock:
                    analysis = analyse(
                        self.handle.model,
                        image,
                        rule_set=self.rule_set,
                        segmenter=self.segmenter,
                        maxpool=self.maxpool,
                    )
            threshold = self.thresholds.get(rel, analysis.threshold)
            exporter.add(
                path,
                mask=analysis.mask_at(threshold),
                score=analysis.segmentation.score,
                probability=analysis.probability,
                threshold=threshold,
            )
            progress((done, total, rel))
        summary = exporter.finish()
        summary["out_dir"] = str(self.out_dir)
        return summary


def describe_export(summary: dict, out_dir: Path) -> str:
    """One status line about a finished export."""
    text = f"Exported {summary.get('masks_written', 0)} masks to {out_dir}"
    if summary.get("errors"):
        text += f"; {summary['errors']} images failed (see lrpseg-report.json)"
    if summary.get("kept_existing"):
        text += f"; kept {summary['kept_existing']} existing files"
    return text + "."


# --------------------------------------------------------------------------------------------- histogram
@dataclass
class Distribution:
    """What the side panel draws for one analysis: score histogram and mixture fit."""

    score_edges: np.ndarray | None = None
    score_counts: np.ndarray | None = None
    fit_edges: np.ndarray | None = None
    fit_density: np.ndarray | None = None
    curves: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    domain: str = ""
    note: str = ""
    note_detail: str = ""

    @property
    def nbytes(self) -> int:
        """Approximate memory."""
        arrays = [self.score_edges, self.score_counts, self.fit_edges, self.fit_density]
        arrays += [a for _, x, y in self.curves for a in (x, y)]
        return sum(a.nbytes for a in arrays if a is not None)


def _explained_region(analysis) -> np.ndarray:
    """The relevance of the explained pixels as a 2-D array (bounding box of ``valid``)."""
    valid = analysis.valid
    if valid.all() or not valid.any():
        return analysis.relevance
    rows, cols = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    return analysis.relevance[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


@dataclass
class ViewData:
    """What the window shows for one analysis, prepared on the worker thread so the GUI only assigns it."""

    heatmap: np.ndarray
    score_index: np.ndarray
    distribution: Distribution

    @property
    def nbytes(self) -> int:
        """Approximate memory."""
        return self.heatmap.nbytes + self.score_index.nbytes + self.distribution.nbytes


def prepare_view(analysis) -> ViewData:
    """The uint8 heatmap and score indices (:mod:`app.viewer`'s conversions) and the histograms."""
    heatmap, _ = relevance_to_uint8(analysis.relevance, analysis.valid)
    return ViewData(heatmap, score_to_index(analysis.segmentation.score), distribution(analysis))


def distribution(analysis) -> Distribution:
    """Histogram of the scores over the explained pixels and, for mixture segmenters, the values the mixture
    was fitted to with each fitted component's weighted density (``core.segment``'s own functions)."""
    seg = analysis.segmentation
    score = seg.score[analysis.valid] if analysis.valid.any() else seg.score.ravel()
    counts, edges = np.histogram(score, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    out = Distribution(score_edges=edges, score_counts=np.log10(1 + counts.astype(np.float64)))
    params = seg.params or {}
    if params.get("degenerate"):
        out.note = ("Nothing on this image stands out as damage, so the mask is empty." if not seg.mask.any()
                    else "Too few different values to fit the mixture: the strongest evidence is the mask.")
        out.note_detail = f"No fit: {params['degenerate']}."
    if seg.method == "simple" or params.get("degenerate"):
        return out
    values = domain_values(_explained_region(analysis), seg.method)
    values = values[np.isfinite(values)]
    if values.size == 0 or not float(values.max()) > float(values.min()):
        return out
    lo, hi = float(values.min()), float(values.max())
    density, fit_edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(lo, hi), density=True)
    x = np.linspace(lo, hi, 256)
    curves = [(name, x, np.asarray(y, float)) for name, y in component_densities(seg, x).items()]
    if curves:
        out.fit_edges, out.fit_density, out.curves = fit_edges, density, curves
        out.domain = str(params.get("domain", ""))
    saturated = params.get("saturated_fraction")
    if isinstance(saturated, float) and saturated > 0 and math.isfinite(saturated):
        out.note = (out.note + " " if out.note else "") + \
            f"{100 * saturated:.1f} % of pixels are certainly damage (score 1) at any threshold."
        out.note_detail = "Saturated posterior: the damage component's probability rounds to 1 (paper §4)."
    return out


def config_dict(config: TrainConfig) -> dict:
    """A TrainConfig as a plain dict (for the ``train_config`` setting)."""
    return asdict(config)
