"""The student segmenter as an object and as a file: safetensors weights plus a JSON description.

Like :mod:`lrpseg.core.checkpoint`, loading never executes code from the file. A student belongs to the
classifier whose explanations taught it: the file records that classifier's SHA-256, head, width and input
size, and :func:`check_student_fits` refuses a student trained for another classifier, width or input size
with a message that says which.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lrpseg.core.atomic import atomic_write_bytes
from lrpseg.core.checkpoint import METADATA_KEY as CLASSIFIER_KEY
from lrpseg.core.checkpoint import CheckpointError, read_tagged
from lrpseg.core.export import file_sha256
from lrpseg.core.student.unet import UNet
from safetensors.torch import save as safetensors_bytes

__all__ = [
    "STUDENT_FORMAT_VERSION", "Student", "check_student_fits", "check_student_for", "load_student", "load_student_for",
    "save_student", "student_provenance",
]

STUDENT_FORMAT_VERSION = 1
METADATA_KEY = "lrpseg_student"
_FORMAT_NAME = "lrpseg-student"
_REQUIRED = ("format", "format_version", "unet", "input_size", "mean", "std", "threshold", "classifier")
_CLASSIFIER_KEYS = ("sha256", "head", "width", "input_size")
_COUNTERS = "num_batches_tracked"  # batch-norm step counters: int64, not needed for inference, not stored


@dataclass
class Student:
    """A trained student: the network, its input normalisation, its default threshold and provenance.

    Attributes
    ----------
    net : UNet
        The network (eval mode after training or loading).
    input_size : int
        The classifier's input side S: training crops and inference windows are S×S.
    mean, std : tuple of float
        The classifier's normalisation.
    threshold : float
        Default threshold on the probability map, chosen by measurement at training time.
    classifier : dict
        ``sha256, head, width, input_size`` of the classifier whose explanations were the targets.
    training : dict
        Training summary (settings, data counts, losses, timing, how the threshold was chosen).
    """

    net: UNet
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    threshold: float
    classifier: dict
    training: dict = field(default_factory=dict)

    def config(self) -> dict:
        """Everything but the weights and the training summary (JSON-serialisable)."""
        return {
            "unet": self.net.config(),
            "input_size": int(self.input_size),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "threshold": float(self.threshold),
            "classifier": dict(self.classifier),
        }

    def describe(self) -> str:
        """e.g. ``U-Net 16 ch, depth 4, stride 2, 224 px, threshold 0.41``."""
        c = self.net.config()
        return (f"U-Net {c['base']} ch, depth {c['depth']}, stride {c['stem_stride']}, {self.input_size} px, "
                f"threshold {self.threshold:.2f}")  # fmt: skip


def save_student(path: str | os.PathLike[str], student: Student) -> None:
    """Write ``student`` to ``path`` atomically (safetensors with the description as header metadata)."""
    meta = {"format": _FORMAT_NAME, "format_version": STUDENT_FORMAT_VERSION, **student.config(),
            "training": student.training}  # fmt: skip
    try:
        meta_json = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"student training summary is not JSON-serialisable: {error}") from error
    tensors = {k: v.detach().cpu().float().contiguous() for k, v in student.net.state_dict().items()
               if not k.endswith(_COUNTERS)}  # fmt: skip
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata={METADATA_KEY: meta_json}))


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such student file")
    hints = {CLASSIFIER_KEY: "; it is a classifier checkpoint: pass it as --model"}
    meta, tensors = read_tagged(path, METADATA_KEY, "student", hints)
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise CheckpointError(f"{path}: student metadata lacks {', '.join(missing)}")
    if meta["format"] != _FORMAT_NAME:
        raise CheckpointError(f"{path}: unknown student format {meta['format']!r}")
    version = meta["format_version"]
    if not isinstance(version, int) or version < 1 or version > STUDENT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: student format_version {version!r}; this lrpseg reads 1 to {STUDENT_FORMAT_VERSION}"
        )
    return meta, tensors


def _build(path: Path, meta: dict, device: str) -> UNet:
    unet = meta["unet"]
    try:
        with torch.device(device):
            net = UNet(base=int(unet["base"]), in_channels=int(unet.get("in_channels", 3)),
                       depth=int(unet["depth"]), stem_stride=int(unet["stem_stride"]))  # fmt: skip
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: student metadata describes an invalid network ({error})") from None
    size = meta["input_size"]
    if not isinstance(size, int) or size <= 0 or size % net.granularity:
        raise CheckpointError(f"{path}: input size {size!r} is not a multiple of {net.granularity}")
    return net


def load_student(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Student:
    """Load a student written by :func:`save_student`, without executing anything from the file.

    Raises
    ------
    CheckpointError
        Missing, truncated or foreign file, a newer format, incomplete metadata, or weights that do not fit
        the network the metadata describes (another width or depth). The message names the file.
    """
    path = Path(path)
    meta, tensors = _read(path)
    expected = {k: v for k, v in _build(path, meta, "meta").state_dict().items() if not k.endswith(_COUNTERS)}
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = (f"{wrong[0]} is {tuple(tensors[wrong[0]].shape)}, {tuple(expected[wrong[0]].shape)} expected"
                  if wrong else f"{len(missing)} tensors missing, {len(unexpected)} unexpected")  # fmt: skip
        raise CheckpointError(
            f"{path}: the weights do not fit the network its metadata describes ({meta['unet']}); "
            f"another width or depth? {detail}"
        )
    net = _build(path, meta, "cpu")
    net.load_state_dict(tensors, strict=False)
    net.eval().to(map_location)
    classifier = meta["classifier"]
    if not isinstance(classifier, dict) or any(k not in classifier for k in _CLASSIFIER_KEYS):
        raise CheckpointError(f"{path}: student metadata does not name its classifier ({', '.join(_CLASSIFIER_KEYS)})")
    return Student(net, meta["input_size"], tuple(meta["mean"]), tuple(meta["std"]), float(meta["threshold"]),
                   classifier, meta.get("training", {}))  # fmt: skip


def classifier_identity(model, sha256: str | None) -> dict:
    """What a student records about its classifier (``model`` a :class:`lrpseg.core.models.VGGA`)."""
    return {"sha256": sha256, "head": model.head, "width": float(model.width), "input_size": int(model.input_size)}


def check_student_fits(student: Student, model, sha256: str | None, where: str = "student") -> None:
    """Refuse a student made for another classifier.

    Parameters
    ----------
    student
        The loaded student.
    model
        The classifier in use (:class:`lrpseg.core.models.VGGA`).
    sha256
        The classifier file's SHA-256 (None: an unsaved model; only the architecture is compared).
    where
        Names the student in the message (its path).

    Raises
    ------
    CheckpointError
        With the first difference: input size, width, head, or (same architecture) another classifier file.
    """
    mine = student.classifier
    theirs = classifier_identity(model, sha256)
    for key, what in (("input_size", "input size"), ("width", "width"), ("head", "head")):
        if mine[key] != theirs[key]:
            raise CheckpointError(
                f"{where}: trained for a classifier of {what} {mine[key]}; this classifier has {what} "
                f"{theirs[key]}. Distil a student for this classifier (lrpseg distil, or Refine masks)."
            )
    if sha256 is not None and mine["sha256"] is not None and mine["sha256"] != sha256:
        raise CheckpointError(
            f"{where}: trained for another classifier (SHA-256 {mine['sha256'][:12]}…, this one "
            f"{sha256[:12]}…); its masks would not match this classifier's decisions. Distil a student for "
            "this classifier (lrpseg distil, or Refine masks)."
        )


def student_provenance(path: Path | None, student: Student) -> dict:
    """What provenance and export reports record about the mask source when it is a student."""
    training = student.training
    return {
        "mask_source": "refined (student)",
        "student": str(path) if path else None,
        "student_sha256": file_sha256(Path(path)) if path and Path(path).exists() else None,
        "student_config": student.config(),
        "student_training": {k: training.get(k) for k in ("config", "images", "counts", "corrected_masks",
                                                          "teacher_coverage", "threshold_method", "seconds")
                             if k in training},
    }


def check_student_for(student: Student, model, model_path: Path | None, where: str = "student") -> None:
    """:func:`check_student_fits` against the classifier file ``model_path`` (its hash; None: unsaved model)."""
    sha = file_sha256(Path(model_path)) if model_path is not None and Path(model_path).is_file() else None
    check_student_fits(student, model, sha, where=where)


def load_student_for(path: Path, model, model_path: Path | None, device) -> Student:
    """Load the student at ``path`` onto ``device`` for the classifier ``model`` read from ``model_path``.

    Raises
    ------
    CheckpointError
        Not a loadable student, or one made for another classifier, width or input size.
    """
    student = load_student(path, map_location=device)
    check_student_for(student, model, model_path, where=str(path))
    return student
