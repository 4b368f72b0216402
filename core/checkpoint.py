"""Model checkpoints: safetensors weights plus a JSON description in the safetensors header metadata.

Loading never executes code from the file (no pickle): a checkpoint is raw tensors and a JSON string.
Anything that is not a complete checkpoint of a format version this code knows is refused with
:class:`CheckpointError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from lrpseg.core.atomic import atomic_write_bytes
from lrpseg.core.models import HEADS, VGGA, build_vgg_a
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as safetensors_bytes

__all__ = ["FORMAT_VERSION", "METADATA_KEY", "CheckpointError", "load_checkpoint", "read_tagged", "save_checkpoint"]

FORMAT_VERSION = 1
METADATA_KEY = "lrpseg_checkpoint"
_FORMAT_NAME = "lrpseg-vgg-a"
_REQUIRED = (
    "format",
    "format_version",
    "head",
    "width",
    "input_size",
    "num_classes",
    "mean",
    "std",
    "class_names",
)


class CheckpointError(Exception):
    """A file cannot be loaded as an lrpseg checkpoint; the message names the file and the problem."""


def save_checkpoint(path: str | os.PathLike[str], model: VGGA, training: dict | None = None) -> None:
    """Write ``model``'s weights and description to ``path`` atomically (safetensors).

    Parameters
    ----------
    path : path-like
        Destination, conventionally ``*.safetensors``. Its folder must exist.
    model : VGGA
        The model; its weights are stored in their current dtype.
    training : dict, optional
        JSON-serialisable summary of how the model was trained (epochs, accuracy, data...).
    """
    meta = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        **model.config(),
        "training": training or {},
    }
    try:
        meta_json = json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"training summary is not JSON-serialisable: {error}") from error
    tensors = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata={METADATA_KEY: meta_json}))


def _sniff(path: Path) -> str:
    """A hint on what a file that is not safetensors is, for the error message."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head.startswith(b"PK\x03\x04"):
        return " (it looks like a zip/PyTorch .pt file; those are pickles, which lrpseg never loads)"
    if head[:1] == b"\x80":
        return " (it looks like a Python pickle, which lrpseg never loads: it can run code)"
    if head.startswith(b"\x89PNG"):
        return " (it is a PNG image)"
    return ""


def read_tagged(
    path: Path, key: str = METADATA_KEY, kind: str = "checkpoint", hints: dict[str, str] | None = None
) -> tuple[dict, dict[str, torch.Tensor]]:
    """The JSON object stored under metadata ``key`` of a safetensors file, and its tensors.

    ``kind`` names the expected file in messages; ``hints`` maps other metadata keys to an explanation added
    when the file carries one of them instead (e.g. a classifier given where a student is expected).

    Raises
    ------
    CheckpointError
        Not a complete safetensors file, no ``key`` metadata, or metadata that is not a JSON object.
    """
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            raw = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except SafetensorError as error:
        raise CheckpointError(f"{path}: not a complete safetensors {kind}: {error}{_sniff(path)}") from None
    if key not in raw:
        hint = next((text for other, text in (hints or {}).items() if other in raw), "")
        raise CheckpointError(f"{path}: a safetensors file, but not an lrpseg {kind} (no '{key}' metadata){hint}")
    try:
        meta = json.loads(raw[key])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: {kind} metadata is not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: {kind} metadata is not a JSON object")
    return meta, tensors


def _check_meta(path: Path, meta: dict) -> None:
    missing = [key for key in _REQUIRED if key not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint metadata lacks {', '.join(missing)}")
    if meta["format"] != _FORMAT_NAME:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta['format']!r}")
    version = meta["format_version"]
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer lrpseg (format_version {version}; this version reads "
            f"up to {FORMAT_VERSION}); update lrpseg to load it"
        )
    if meta["head"] not in HEADS:
        raise CheckpointError(f"{path}: unknown head {meta['head']!r}")


def _described(meta: dict) -> str:
    return f"head {meta['head']!r}, width {meta['width']}, input size {meta['input_size']}"


def _few(keys: list[str], limit: int = 3) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _build(path: Path, meta: dict, device: str) -> VGGA:
    """The model ``meta`` describes, built on ``device``; CheckpointError if it cannot be built."""
    try:
        with torch.device(device):
            return build_vgg_a(
                head=meta["head"],
                width=meta["width"],
                input_size=meta["input_size"],
                num_classes=meta["num_classes"],
                mean=meta["mean"],
                std=meta["std"],
                class_names=meta["class_names"],
            )
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: checkpoint describes an invalid model ({error})") from None
    except RuntimeError as error:  # e.g. an absurd input_size: the described model does not fit in memory
        raise CheckpointError(
            f"{path}: cannot build the model the checkpoint describes ({_described(meta)}): "
            f"{(str(error).strip().splitlines() or [type(error).__name__])[-1][:200]}"
        ) from None


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[VGGA, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`, without executing anything from the file.

    Parameters
    ----------
    path : path-like
        The ``.safetensors`` checkpoint.
    map_location : str or torch.device
        Device the model is moved to.

    Returns
    -------
    model : VGGA
        The model, in eval mode, with the stored weights and dtype.
    metadata : dict
        ``head, width, input_size, num_classes, mean, std, class_names, training, format_version``.

    Raises
    ------
    CheckpointError
        Missing, truncated or foreign file, pickles, a newer ``format_version``, missing metadata keys or
        tensors that do not fit the described architecture. The message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    meta, tensors = read_tagged(path)
    _check_meta(path, meta)
    # The described model is first built on the meta device (no memory) so that a file whose tensors do not
    # fit its description is refused before a possibly huge model is allocated.
    expected = _build(path, meta, "meta").state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: the weights do not belong to the model its metadata describes ({_described(meta)}); "
            f"another head or architecture? Missing tensors: {_few(missing)}; unexpected: {_few(unexpected)}"
        )
    wrong = [key for key, value in tensors.items() if value.shape != expected[key].shape]
    if wrong:
        first = wrong[0]
        raise CheckpointError(
            f"{path}: the weights have the wrong shape for the model its metadata describes "
            f"({_described(meta)}); "
            f"another width or input size? {first} is {tuple(tensors[first].shape)} in the file, "
            f"{tuple(expected[first].shape)} expected"
            + (f" ({len(wrong) - 1} more tensors differ)" if len(wrong) > 1 else "")
        )
    dtypes = {value.dtype for value in tensors.values()}
    if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
        raise CheckpointError(
            f"{path}: tensors must share one floating-point dtype, found {sorted(map(str, dtypes))}"
        )
    model = _build(path, meta, "cpu").to(next(iter(dtypes)))
    model.load_state_dict(tensors, strict=True)
    model.eval().to(map_location)
    info = {key: meta[key] for key in _REQUIRED if key != "format"}
    info["training"] = meta.get("training", {})
    return model, info
