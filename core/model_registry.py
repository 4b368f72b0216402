"""Loaded classifiers and their identity: a model is known by the SHA-256 of its checkpoint file's bytes.

Cached predictions, relevance maps and per-image thresholds are keyed by :func:`model_id`. A name such as the
file stem would let a retrained ``model.safetensors`` reuse the maps and thresholds of the model it replaced;
the content hash cannot. Hashes are remembered per file path, size and modification time, so a file is read
once per change, not once per use.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lrpseg.core.checkpoint import load_checkpoint
from lrpseg.core.export import file_sha256

__all__ = ["LoadedModel", "ModelRegistry", "model_id"]

ID_PREFIX = "sha256-"
ID_HEX_DIGITS = 16  # 64 bits: collisions among one user's models are out of reach

_hash_lock = threading.Lock()
_known_hashes: dict[tuple[str, int, int], str] = {}


def model_id(path: str | os.PathLike[str]) -> str:
    """The identity of the checkpoint at ``path``: ``"sha256-"`` and the first 16 hex digits of its hash.

    Raises
    ------
    OSError
        The file cannot be read.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        known = _known_hashes.get(key)
    if known is None:
        known = ID_PREFIX + file_sha256(path)[:ID_HEX_DIGITS]
        with _hash_lock:
            _known_hashes[key] = known
    return known


@dataclass(eq=False)
class LoadedModel:
    """A classifier in memory, its identity and the lock every user of the model holds.

    LRP registers hooks on the model's modules, so two threads (the viewer's analyses and an export) must not
    use one model at once: hold ``lock`` around every forward or explanation.
    """

    model: Any
    model_id: str
    path: Path | None
    device: torch.device
    metadata: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        """What the user calls the model: its file name without suffix (or its id when it has no file)."""
        return self.path.stem if self.path is not None else self.model_id

    def describe(self) -> str:
        """e.g. ``model-20250101-120000 · 128n · width 0.125 · 64 px``."""
        model = self.model
        return f"{self.name} · {model.head} · width {model.width:g} · {model.input_size} px"


class ModelRegistry:
    """The models loaded in one session: loading an unchanged file twice reuses the model in memory.

    Only the ``keep`` models used last stay registered, so a long session of retraining does not pile up models.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, str, str], LoadedModel] = OrderedDict()

    def load(self, path: str | os.PathLike[str], device: torch.device) -> LoadedModel:
        """The checkpoint at ``path`` on ``device``.

        Raises
        ------
        lrpseg.core.checkpoint.CheckpointError
            The file is not a loadable lrpseg checkpoint.
        OSError
            The file cannot be read.
        """
        path = Path(path)
        key = (model_id(path), str(path.resolve()), str(device))  # a copy elsewhere is its own file
        with self._lock:
            known = self._models.get(key)
            if known is not None:
                self._models.move_to_end(key)
        if known is not None:
            return known
        model, metadata = load_checkpoint(path, map_location=device)
        return self.add(model, path, device, metadata)

    def add(self, model: Any, path: str | os.PathLike[str], device: torch.device, metadata: dict) -> LoadedModel:
        """Register a model already in memory (e.g. just trained) whose checkpoint was written to ``path``."""
        path = Path(path)
        loaded = LoadedModel(model=model, model_id=model_id(path), path=path, device=device, metadata=metadata)
        key = (loaded.model_id, str(path.resolve()), str(device))
        with self._lock:
            self._models[key] = loaded
            self._models.move_to_end(key)
            while len(self._models) > self.keep:
                self._models.popitem(last=False)
        return loaded

    def forget(self) -> None:
        """Drop every model (e.g. when a folder closes), so their memory can be freed."""
        with self._lock:
            self._models.clear()
