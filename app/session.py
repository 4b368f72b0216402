"""Glue between the window and ``core`` that needs no widgets: settings, model files, jobs' bodies.

Everything here is plain Python so it can run on worker threads and be tested without a window. It holds no
algorithm: it chooses which core function to call with which arguments and packs the results for display.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lrpseg.app.analysis import ModelHandle
from lrpseg.app.viewer import relevance_to_uint8
from lrpseg.core.adoption import Verdict, train_candidate
from lrpseg.core.cancel import CancelToken
from lrpseg.core.export_run import ExportOptions, export_workflow, start_export
from lrpseg.core.images import ImageReadError, probe_image
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.model_registry import ModelRegistry, model_id
from lrpseg.core.segment import component_densities, domain_values, score_to_uint8
from lrpseg.core.train import TrainConfig
from lrpseg.core.train_defaults import default_train_settings
from lrpseg.core.workflow import (  # noqa: F401  (the window reads the defaults and choices from here)
    DEFAULT_RULE_SET,
    DEFAULT_SEGMENTER,
    MODELS_DIR,
    Workflow,
    adopt_unkeyed_thresholds,
    rule_set_choices,
    segmenter_choices,
    setting,
    threshold_key,
)

MIN_PER_CLASS = 2
HISTOGRAM_BINS = 64
#: The models of this GUI session by content hash (a model loaded twice is one model in memory).
MODELS = ModelRegistry()


# --------------------------------------------------------------------------------------------- models
def known_model_id(path: Path | None) -> str | None:
    """The identity of the model file at ``path`` (:func:`lrpseg.core.model_registry.model_id`), or None when
    there is no such file."""
    if path is None:
        return None
    try:
        return model_id(path)
    except OSError:
        return None


def load_model(path: Path, device: torch.device) -> ModelHandle:
    """Load a checkpoint onto ``device`` (raises :class:`lrpseg.core.checkpoint.CheckpointError`)."""
    return MODELS.load(path, device)


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


SIZE_SAMPLE = 50


def folder_train_settings(project, root: Path, device: torch.device) -> dict:
    """The project's ``train_config``; a folder without one gets :func:`core.train_defaults.default_train_settings`
    for this device and (a sample of) its images' sizes, stored so the training dialog shows them."""
    stored = project.get_setting("train_config", None)
    if stored:
        return stored
    shapes = []
    for rel in project.images()[:SIZE_SAMPLE]:
        try:
            info = probe_image(root / rel)
        except ImageReadError:
            continue
        shapes.append((info.height, info.width))
    settings = default_train_settings(shapes, device.type)
    project.set_setting("train_config", settings)
    return settings


def train_config(project, root: Path, device: torch.device) -> TrainConfig:
    """:class:`core.train.TrainConfig` from the project's settings (:func:`folder_train_settings`; unknown keys
    ignored) and the window's device."""
    stored = folder_train_settings(project, root, device)
    known = {f.name for f in fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in stored.items() if k in known})
    config.device = str(device)
    return config


@dataclass
class TrainOutcome:
    """A finished training: the new model (written to its file) and whether it should replace the current one."""

    handle: ModelHandle
    verdict: Verdict


def train(
    paths: Sequence[Path],
    labels: Sequence[str],
    config: TrainConfig,
    out: Path,
    device: torch.device,
    progress: Callable[[Any], None],
    cancel: CancelToken,
    current: Path | None = None,
    names: Sequence[str] | None = None,
) -> TrainOutcome:
    """Train, write ``out`` and judge the new model against ``current`` (:func:`core.adoption.train_candidate`)."""
    result, verdict = train_candidate(paths, labels, config, out, current, names, progress, cancel)
    model = result.model.to(device).eval()
    return TrainOutcome(MODELS.add(model, out, device, {"training": result.summary, **model.config()}), verdict)


# --------------------------------------------------------------------------------------------- export
@dataclass
class ExportPlan:
    """Everything an export job needs, fixed when it starts (the GUI may change its state meanwhile).

    :meth:`run` is :func:`lrpseg.core.export_run.export_workflow`, the export ``lrpseg segment --project`` runs.
    """

    project: Any
    rels: list[str]
    out_dir: Path
    handle: ModelHandle
    rule_set: str
    segmenter: str
    cached: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    student: Any = None  # (Student, path) whose refined masks to export instead of the explanation's, or None

    def run(self, progress: Callable[[Any], None], cancel: CancelToken) -> dict:
        """Analyse (or reuse the viewer's and the project cache's analyses of) every image and write its mask.

        Each image uses its own threshold (override, else the segmenter's default). Unreadable images are
        recorded in the report instead of stopping the export.
        """
        student, student_path = self.student or (None, None)
        workflow = Workflow(self.project, self.handle, rule_set=self.rule_set, segmenter=self.segmenter,
                            student=student, student_path=student_path)
        export = start_export(workflow, self.out_dir, ExportOptions(overwrite=self.overwrite), tool="lrpseg-gui")
        return export_workflow(
            workflow, self.rels, export, known=self.cached,
            progress=lambda done, total, rel: progress((done, total, rel)), cancel=cancel,
        )


def suggested_export_folder(root: Path) -> Path:
    """Where the Export dialog starts: ``<folder>-masks`` beside the image folder (created), never inside it,
    so exported masks never show up as images on the next open. Falls back to the home folder when the
    sibling cannot be created."""
    folder = root.parent / f"{root.name}-masks"
    try:
        folder.mkdir(exist_ok=True)
    except OSError:
        return Path.home()
    return folder


def holds_masks(folder: Path) -> bool:
    """Whether ``folder`` already holds PNG files an export could replace."""
    return folder.is_dir() and any(folder.glob("*.png"))


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
    return ViewData(heatmap, score_to_uint8(analysis.segmentation.score), distribution(analysis))


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
    if seg.method not in segmenter_choices() or seg.method == "simple" or params.get("degenerate"):
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
