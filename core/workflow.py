"""The headless workflow of a project: what the GUI and ``lrpseg segment --project`` share.

A :class:`Workflow` is a project folder with one model and one set of explanation choices (rule set,
segmenter, max-pool mode). It analyses images through the project's relevance cache and knows each image's
threshold (:class:`ThresholdPolicy`). :mod:`lrpseg.core.export_run` writes what it produces. Nothing here uses
Qt: the GUI keeps only widgets, workers and signals, the way ilastik's headless mode and napari's Qt-free model
layer split the work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lrpseg.core.cancel import CancelToken, check
from lrpseg.core.images import ImageReadError, read_image
from lrpseg.core.lrp import DEFAULT_RULE_SET, DEFAULT_VIEWS, RULE_SETS
from lrpseg.core.model_registry import LoadedModel, ModelRegistry
from lrpseg.core.pipeline import Analysis, Outcome, segment_explained
from lrpseg.core.relevance_cache import RelevanceCache, explain_cached
from lrpseg.core.segment import DEFAULT_SEGMENTER, SEGMENTERS, segmenter_provenance
from lrpseg.core.student.infer import refine
from lrpseg.core.student.store import Student, student_provenance

EXPLANATION = "explanation"

__all__ = [
    "DEFAULT_MAXPOOL",
    "DEFAULT_RULE_SET",
    "DEFAULT_SEGMENTER",
    "EXPLANATION",
    "MODELS_DIR",
    "ThresholdPolicy",
    "Workflow",
    "WorkflowError",
    "adopt_unkeyed_thresholds",
    "rule_set_choices",
    "segmenter_choices",
    "setting",
    "student_source",
    "threshold_key",
]

DEFAULT_MAXPOOL = "wta"
#: Where the GUI writes the models it trains, relative to the project folder.
MODELS_DIR = Path(".lrpseg") / "models"


class WorkflowError(Exception):
    """A project cannot be processed as asked (no model yet, missing model file); the message says why."""


def rule_set_choices() -> list[str]:
    """Rule-set names from :data:`lrpseg.core.lrp.RULE_SETS`, the paper's two first."""
    names = list(RULE_SETS)
    first = [n for n in ("ours", "montavon") if n in names]
    return first + [n for n in names if n not in first]


def segmenter_choices() -> list[str]:
    """Segmenter names from :data:`lrpseg.core.segment.SEGMENTERS` in the paper's order."""
    names = list(SEGMENTERS)
    first = [n for n in ("simple", "gmm", "bmm") if n in names]
    return first + [n for n in names if n not in first]


def setting(project: Any, key: str, default: str, choices: Sequence[str]) -> str:
    """A stored choice of ``project``, or ``default`` when missing or no longer offered."""
    value = project.get_setting(key, default)
    return value if value in choices else default


def threshold_key(model_id: str, rule_set: str, segmenter: str, source: str = EXPLANATION) -> str:
    """Key of per-image threshold overrides, e.g. ``"sha256-0123456789abcdef/ours/bmm"``.

    A threshold is chosen on one score map, which depends on the model, the rule set and the segmenter; a
    retrained model gets new maps and starts from the segmenter's defaults again. Refined masks (``source``
    ``"student:<id>"``, see :func:`student_source`) have the student's map: ``"<model id>/refined/student:<id>"``.
    """
    return f"{model_id}/{rule_set}/{segmenter}" if source == EXPLANATION else f"{model_id}/refined/{source}"


def student_source(path: Path | None) -> str:
    """The mask source of a student's refined masks, ``"student:<file name without suffix>"``."""
    return f"student:{Path(path).stem if path else 'unsaved'}"


class ThresholdPolicy:
    """Per-image thresholds of one model, rule set and segmenter in a project.

    An image's threshold is its override when the user set one, else the segmenter's default for its score map.
    """

    def __init__(self, project: Any, model_id: str, rule_set: str, segmenter: str, source: str = EXPLANATION) -> None:
        self.project = project
        self.key = threshold_key(model_id, rule_set, segmenter, source)

    def override(self, rel: str) -> float | None:
        """The user's threshold for ``rel``, or None."""
        return self.project.threshold_override(rel, self.key)

    def set_override(self, rel: str, value: float | None) -> None:
        """Store (None: remove) the user's threshold for ``rel``."""
        self.project.set_threshold_override(rel, self.key, value)

    def overrides(self) -> dict[str, float]:
        """Every override: image -> threshold."""
        return self.project.threshold_overrides(self.key)

    def threshold(self, rel: str, analysis: Analysis) -> float:
        """The threshold in use for ``rel``: its override, else the segmenter's default."""
        value = self.override(rel)
        return float(analysis.threshold) if value is None else float(value)


def adopt_unkeyed_thresholds(project: Any, model_id: str) -> int:
    """Give overrides stored by lrpseg versions that keyed them by rule set and segmenter only to ``model_id``.

    Call it for the project's own model, the one they were chosen with; returns how many moved. An override the
    model already has is kept.
    """
    moved = 0
    for old_key in project.threshold_keys():
        if old_key.count("/") != 1:
            continue
        rule_set, segmenter = old_key.split("/")
        new_key = threshold_key(model_id, rule_set, segmenter)
        for rel, value in project.threshold_overrides(old_key).items():
            if project.threshold_override(rel, new_key) is None:
                project.set_threshold_override(rel, new_key, value)
            project.set_threshold_override(rel, old_key, None)
            moved += 1
    return moved


@dataclass
class Workflow:
    """One project folder, one model and the explanation choices: analyses images and knows their thresholds.

    Build it with :meth:`from_project` (the project's own model and settings, what the GUI shows) or directly.
    """

    project: Any
    model: LoadedModel
    rule_set: str = DEFAULT_RULE_SET
    segmenter: str = DEFAULT_SEGMENTER
    maxpool: str = DEFAULT_MAXPOOL
    mode: str = "auto"
    start: str = "logodds"
    views: int = DEFAULT_VIEWS
    student: Student | None = None
    student_path: Path | None = None

    def __post_init__(self) -> None:
        self.root = Path(self.project.folder)
        self.cache = RelevanceCache(self.project)
        source = EXPLANATION if self.student is None else student_source(self.student_path)
        self.thresholds = ThresholdPolicy(self.project, self.model.model_id, self.rule_set, self.segmenter, source)

    @classmethod
    def from_project(
        cls,
        project: Any,
        device: torch.device,
        registry: ModelRegistry | None = None,
        model_path: Path | None = None,
        **choices: str | int | None,
    ) -> Workflow:
        """The workflow the GUI runs for ``project``: its remembered model (or ``model_path``), its stored rule
        set and segmenter; ``choices`` (``rule_set``, ``segmenter``, ``maxpool``, ``mode``, ``start``,
        ``views``) replace those.

        Raises
        ------
        WorkflowError
            The project has no model yet, or its model file is missing.
        lrpseg.core.checkpoint.CheckpointError
            The model file is not a loadable checkpoint.
        """
        path = model_path or project.model_path
        if path is None:
            raise WorkflowError(f"project {project.folder} has no model yet; train one in the app or pass --model")
        if not Path(path).is_file():
            raise WorkflowError(f"the model of project {project.folder} is missing: {path}")
        loaded = (registry or ModelRegistry()).load(path, device)
        stored = {
            "rule_set": setting(project, "rule_set", DEFAULT_RULE_SET, rule_set_choices()),
            "segmenter": setting(project, "segmenter", DEFAULT_SEGMENTER, segmenter_choices()),
        }
        workflow = cls(project, loaded, **{**stored, **{k: v for k, v in choices.items() if v is not None}})
        if model_path is None:
            adopt_unkeyed_thresholds(project, loaded.model_id)
        return workflow

    def analyse(self, rel: str, explained=None) -> Analysis:
        """Analyse one image of the folder, reusing a cached explanation (or ``explained``) when there is one;
        with a :attr:`student`, the mask is the student's (:func:`lrpseg.core.student.infer.refine`).

        Raises
        ------
        lrpseg.core.images.ImageReadError
            The image cannot be decoded.
        """
        image = read_image(self.root / rel) if explained is None or self.student is not None else None
        if explained is None:
            explained = explain_cached(
                self.model, image, rel, self.rule_set, self.maxpool, self.cache, self.mode, self.start, self.views
            )
        analysis = segment_explained(explained, self.segmenter)
        return analysis if self.student is None else refine(analysis, self.student, image)

    def analyses(
        self,
        rels: Sequence[str],
        known: Mapping[str, Analysis] | None = None,
        progress: Callable[[int, int, str], None] | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[Outcome]:
        """Analyse many images, one :class:`~lrpseg.core.pipeline.Outcome` each (an error instead of stopping).

        ``known`` holds analyses already made under this workflow's model and choices (e.g. the viewer's);
        they are used as they are. ``progress(done, total, rel)`` is called after each image.
        """
        known = known or {}
        for done, rel in enumerate(rels, start=1):
            check(cancel)
            path = self.root / rel
            try:
                analysis = known.get(rel) or self.analyse(rel)
                outcome = Outcome(path, analysis=analysis)
            except ImageReadError as error:
                outcome = Outcome(path, error=str(error))
            except (ValueError, RuntimeError, MemoryError) as error:
                outcome = Outcome(path, error=f"{path}: {type(error).__name__}: {error}")
            if progress:
                progress(done, len(rels), rel)
            yield outcome

    def describe(self) -> dict:
        """The facts an export's provenance records about this workflow."""
        return {
            "model": str(self.model.path) if self.model.path else self.model.model_id,
            "model_id": self.model.model_id,
            "model_config": self.model.model.config(),
            "rule_set": self.rule_set,
            **segmenter_provenance(self.segmenter),
            "maxpool": self.maxpool,
            "mode": self.mode,
            "relevance_start": self.start,
            "views": self.views,
            **({"mask_source": EXPLANATION} if self.student is None
               else student_provenance(self.student_path, self.student)),
        }

