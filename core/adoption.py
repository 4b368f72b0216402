"""Which model a project uses: adopt a new model only when it is better, and keep every model in a history.

After training, the new model and the project's current model are scored on the same validation images
(the new run's held-out split of the current labels). The new one is adopted unless it is near chance or worse
than the current one; the user may still choose it ("use anyway"). Every trained model is recorded in the
project's history (setting ``model_history``) with its date, label counts, validation balanced accuracy and
settings, so switching back is one step.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lrpseg.core.cancel import CancelToken
from lrpseg.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lrpseg.core.train import ProgressCallback, TrainConfig, TrainResult, train_classifier

__all__ = [
    "CHANCE_LEVEL",
    "HISTORY_SETTING",
    "ModelRecord",
    "Verdict",
    "judge",
    "near_chance",
    "model_history",
    "record_model",
    "train_candidate",
]

# Balanced accuracy below this counts as chance level: on the small validation splits of an inspection
# project (16 images on the demo) a model that guesses scores 0.5 ± 0.1.
CHANCE_LEVEL = 0.6
HISTORY_SETTING = "model_history"


def near_chance(balanced_accuracy: float | None) -> bool:
    """Whether a validation balanced accuracy is missing or below :data:`CHANCE_LEVEL`."""
    return balanced_accuracy is None or balanced_accuracy < CHANCE_LEVEL


@dataclass(frozen=True)
class Verdict:
    """Whether to adopt a new model, why, and both figures it was decided on."""

    adopt: bool
    reason: str
    new_score: float | None
    current_score: float | None


def _fmt(score: float | None) -> str:
    return "n/a" if score is None else f"{score:.2f}"


def judge(new_score: float | None, current_score: float | None) -> Verdict:
    """Decide on a new model from validation balanced accuracies on the same images.

    Parameters
    ----------
    new_score
        The new model's validation balanced accuracy (None: no validation images).
    current_score
        The current model's on the same images, or None when there is no current model.

    Returns
    -------
    Verdict
        Both scores are on the same validation images. Adopt when the new model is not near chance and scores
        at least as well as the current one (a tie goes to the new model, which has seen more labels).
    """
    if near_chance(new_score):
        reason = f"near chance: balanced accuracy {_fmt(new_score)} (below {CHANCE_LEVEL:.2f})"
        if current_score is not None:
            reason += f", current model {_fmt(current_score)}"
        return Verdict(False, reason, new_score, current_score)
    if current_score is not None and new_score < current_score:
        reason = f"worse: balanced accuracy {_fmt(new_score)} against {_fmt(current_score)} for the current model"
        return Verdict(False, reason, new_score, current_score)
    against = "" if current_score is None else f" (previous model {_fmt(current_score)})"
    return Verdict(True, f"balanced accuracy {_fmt(new_score)}{against}", new_score, current_score)


@dataclass(frozen=True)
class ModelRecord:
    """One trained model in a project's history."""

    path: str
    trained_at: str
    damaged_labels: int
    undamaged_labels: int
    val_balanced_accuracy: float | None
    settings: dict[str, Any]
    adopted: bool

    def describe(self) -> str:
        """One line for a menu: date, validation score and label counts."""
        return (
            f"{self.trained_at[:16].replace('T', ' ')} · balanced accuracy {_fmt(self.val_balanced_accuracy)} · "
            f"{self.damaged_labels} damaged / {self.undamaged_labels} undamaged labels"
        )


def model_history(project) -> list[ModelRecord]:
    """The project's trained models, oldest first (records that no longer parse are skipped)."""
    records = []
    for entry in project.get_setting(HISTORY_SETTING, []) or []:
        try:
            records.append(ModelRecord(**entry))
        except TypeError:
            continue
    return records


def record_model(project, path: Path, summary: dict, adopted: bool) -> ModelRecord:
    """Append a trained model to the project's history and return its record.

    ``summary`` is the training summary (:func:`core.train.training_summary`); ``path`` is stored relative to
    the project folder when it lies inside it.
    """
    path = Path(path)
    try:
        stored = path.resolve().relative_to(Path(project.folder).resolve()).as_posix()
    except ValueError:
        stored = str(path)
    counts = summary.get("label_counts") or {}
    record = ModelRecord(
        path=stored,
        trained_at=dt.datetime.now().isoformat(timespec="seconds"),
        damaged_labels=int(counts.get("damaged", 0)),
        undamaged_labels=int(counts.get("undamaged", 0)),
        val_balanced_accuracy=summary.get("val_balanced_accuracy"),
        settings=summary.get("config", {}),
        adopted=adopted,
    )
    history = [asdict(r) for r in model_history(project)] + [asdict(record)]
    project.set_setting(HISTORY_SETTING, history)
    return record


def train_candidate(
    paths: Sequence[Path],
    labels: Sequence[str],
    config: TrainConfig,
    out: Path,
    current: Path | None = None,
    names: Sequence[str] | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[TrainResult, Verdict]:
    """Train a new model, write it to ``out`` (only on success) and judge it against the ``current`` model file.

    Both models are scored on the same validation images (the new run's held-out split of these labels). The
    current model is read afresh from its file (an unreadable one counts as none), so a copy in use elsewhere
    is never touched. ``names`` (the images' paths relative to their folder) go into the training summary as
    ``trained_on``, so predictions on them can be marked in-sample.
    """
    current_model = None
    if current is not None and Path(current).exists():
        try:
            current_model = load_checkpoint(current, map_location=config.device)[0]
        except CheckpointError:
            current_model = None
    result = train_classifier(paths, labels, config, progress, cancel, current=current_model)
    summary = result.summary
    summary["trained_on"] = list(names) if names is not None else [Path(p).name for p in paths]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, result.model, training=summary)
    return result, judge(summary["val_balanced_accuracy"], summary.get("current_val_balanced_accuracy"))
