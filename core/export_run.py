"""The one export: masks, score maps and reports from analysed images, for the GUI and every CLI engine.

:class:`MaskExport` takes one :class:`~lrpseg.core.pipeline.Outcome` at a time (:meth:`MaskExport.export_one`)
and writes the report and provenance at :meth:`MaskExport.finish`, so any engine that analyses images (one by
one, in batches, or on a cluster) feeds the same writer. :func:`export_workflow` is the whole export of a
project (with :func:`start_export`): what the GUI's Export command and ``lrpseg segment --project`` both run.

Thresholds: an explicit ``ExportOptions.threshold`` applies to every image; otherwise an image uses its
per-image override (:class:`~lrpseg.core.workflow.ThresholdPolicy`), else its segmenter's default.

Corrected masks: an image with a mask corrected by hand (:mod:`~lrpseg.core.corrected_masks`) is exported with
that mask instead of the automatic one, whatever the threshold; its report record says ``mask_source:
"corrected"`` with the correction's author, times and origin, and ``provenance.json`` lists every corrected
mask written. A corrected mask that cannot be read is that image's error, never silently replaced.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from lrpseg.core.cancel import CancelToken
from lrpseg.core.corrected_masks import CorrectedMaskError, CorrectedMasks
from lrpseg.core.export import ExportedImage, Exporter, file_sha256
from lrpseg.core.export_layout import export_folder_problem, relative_path
from lrpseg.core.pipeline import Analysis, Outcome
from lrpseg.core.workflow import Workflow

__all__ = [
    "ExportOptions",
    "MaskExport",
    "export_folder_problem",
    "export_workflow",
    "model_provenance",
    "start_export",
]


@dataclass
class ExportOptions:
    """What to write, and how.

    Attributes
    ----------
    overwrite : bool
        Replace existing files (default: keep them and list them in the report).
    write_scores, write_coco : bool
        Also write score maps / a COCO JSON.
    threshold : float or None
        One score threshold for every image instead of the per-image thresholds.
    """

    overwrite: bool = False
    write_scores: bool = True
    write_coco: bool = False
    threshold: float | None = None


def model_provenance(path: Path | None, model_id: str | None = None) -> dict:
    """``model`` and ``model_sha256`` of a provenance record."""
    exists = path is not None and Path(path).is_file()
    return {
        "model": str(path) if path is not None else model_id,
        "model_sha256": file_sha256(Path(path)) if exists else None,
    }


class MaskExport:
    """Writes one export folder from analysed images.

    Parameters
    ----------
    out_dir : path-like
        Created if missing.
    provenance : dict
        Facts about the run for ``provenance.json`` (model, rule set, segmenter, ...).
    options : ExportOptions
        Overwriting, extra files, one threshold for all.
    thresholds : mapping of str to float
        Per-image overrides, by image path relative to ``root``.
    root : path-like, optional
        The image folder (relative paths are taken from it).
    corrected : CorrectedMasks, optional
        The project's hand-corrected masks, written instead of the automatic ones (needs ``root``).
    labels : mapping of str to str, optional
        The user's image labels, by path relative to ``root``: a labelled image gets a mask when labelled
        damaged, whatever the classifier says (:func:`lrpseg.core.labels.gets_mask`).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        provenance: dict,
        options: ExportOptions | None = None,
        thresholds: Mapping[str, float] | None = None,
        root: str | os.PathLike[str] | None = None,
        corrected: CorrectedMasks | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.options = options or ExportOptions()
        self.labels = dict(labels or {})
        self.corrected = corrected
        self.corrections = corrected.infos() if corrected is not None else {}
        self.root = None if root is None else Path(root)
        self.thresholds = dict(thresholds or {})
        overrides = {} if self.options.threshold is not None else self.thresholds
        record = {
            **provenance,
            "threshold": "segmenter default" if self.options.threshold is None else self.options.threshold,
            "threshold_overrides": overrides,
        }
        self.summary: dict | None = None
        self.exporter = Exporter(
            Path(out_dir),
            provenance=record,
            overwrite=self.options.overwrite,
            write_scores=self.options.write_scores,
            write_coco=self.options.write_coco,
            root=self.root,
        )

    @property
    def out_dir(self) -> Path:
        """The export folder."""
        return self.exporter.out_dir

    @property
    def records(self) -> list[ExportedImage]:
        """What was done per image so far."""
        return self.exporter.records

    def threshold_for(self, path: Path, analysis: Analysis) -> float:
        """The threshold the mask of ``path`` is cut at."""
        if self.options.threshold is not None:
            return float(self.options.threshold)
        value = self.thresholds.get(relative_path(path, self.root))
        return float(analysis.threshold) if value is None else float(value)

    def complete_images(self, paths: Sequence[Path]) -> set[Path]:
        """The images whose files are all in the folder already (see :meth:`Exporter.complete_images`)."""
        return self.exporter.complete_images(paths)

    def keep_complete(self, path: Path) -> ExportedImage:
        """Record a complete image without analysing it (:meth:`Exporter.keep_complete`)."""
        return self.exporter.keep_complete(path)

    def export_one(self, outcome: Outcome) -> ExportedImage:
        """Write one image's mask (and score map), or record its error; the export goes on either way."""
        path = Path(outcome.path)
        analysis = outcome.analysis
        if analysis is None:
            return self.exporter.add(path, error=outcome.error or f"{path}: not analysed")
        rel = relative_path(path, self.root)
        if rel in self.corrections:
            return self._export_corrected(path, rel, analysis)
        threshold = self.threshold_for(path, analysis)
        label = self.labels.get(rel)
        return self.exporter.add(
            path,
            mask=analysis.mask_at(threshold, label),
            score=analysis.segmentation.score,
            probability=analysis.probability,
            threshold=threshold,
            label=label,
        )

    def _export_corrected(self, path: Path, rel: str, analysis: Analysis) -> ExportedImage:
        info = self.corrections[rel]
        try:
            mask = self.corrected.load(rel, shape=analysis.segmentation.score.shape)
        except CorrectedMaskError as error:
            return self.exporter.add(path, error=f"{error}; not exported (the automatic mask would replace it)")
        record = self.exporter.add(path, mask=mask, score=analysis.segmentation.score,
                                   probability=analysis.probability, label=self.labels.get(rel))
        record.mask_source, record.correction = "corrected", info.provenance()
        return record

    def finish(self) -> dict:
        """Write the report, provenance and COCO files; return the summary (with ``out_dir``).

        The provenance lists only the threshold overrides of the automatic masks this run wrote, and every
        corrected mask it wrote.
        """
        if self.options.threshold is None:
            written = {relative_path(r.image, self.root) for r in self.records
                       if r.mask is not None and r.mask_source != "corrected"}
            self.exporter.provenance["threshold_overrides"] = {
                rel: value for rel, value in self.thresholds.items() if rel in written
            }
        self.exporter.provenance["corrected_masks"] = {
            relative_path(r.image, self.root): r.correction for r in self.records if r.mask_source == "corrected"}
        summary = self.exporter.finish()
        summary["out_dir"] = str(self.out_dir)
        self.summary = summary
        return summary


def start_export(
    workflow: Workflow,
    out_dir: str | os.PathLike[str],
    options: ExportOptions | None = None,
    tool: str = "lrpseg",
) -> MaskExport:
    """A :class:`MaskExport` of ``workflow``'s project: its provenance and per-image thresholds.

    ``tool`` says who exported (``"lrpseg-gui"``, ``"lrpseg segment"``) in the provenance.
    """
    provenance = {
        "source_folder": str(workflow.root),
        **workflow.describe(),
        **model_provenance(workflow.model.path, workflow.model.model_id),
        "tool": tool,
        "mask_decision": "the user's label where there is one, else the classifier's",
    }
    return MaskExport(out_dir, provenance, options, workflow.thresholds.overrides(), root=workflow.root,
                      corrected=CorrectedMasks(workflow.project), labels=workflow.project.labels())


def export_workflow(
    workflow: Workflow,
    rels: Sequence[str],
    export: MaskExport,
    known: Mapping[str, Analysis] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> dict:
    """Export the masks of ``rels`` as ``workflow`` makes them: its model, choices and per-image thresholds.

    Parameters
    ----------
    workflow : Workflow
        The project, model and explanation choices.
    rels : sequence of str
        Images to export, relative to the project folder.
    export : MaskExport
        The writer, from :func:`start_export`.
    known : mapping of str to Analysis, optional
        Analyses already made under the same model and choices (reused as they are).
    progress : callable, optional
        ``progress(done, total, rel)`` after each image.
    cancel : CancelToken, optional
        Checked before each image; files written so far stay complete.

    Returns
    -------
    dict
        The summary: ``images``, ``masks_written``, ``errors``, ``kept_existing``, ``out_dir``.
    """
    for outcome in workflow.analyses(rels, known=known, progress=progress, cancel=cancel):
        export.export_one(outcome)
    return export.finish()
