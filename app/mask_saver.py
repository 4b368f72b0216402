"""Storing corrected masks on a worker thread, so a 2048² PNG and its fsync never hold up the next stroke."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict

import numpy as np
from lrpseg.app.workers import describe_error, track
from lrpseg.core.corrected_masks import CorrectedMasks
from PySide6.QtCore import QThread, Signal

log = logging.getLogger(__name__)


class MaskSaver(QThread):
    """Stores corrected masks on a worker thread; per image only the latest pending change is written.

    Signals: ``saved(rel, info_or_None)`` after a save (info) or a removal (None); ``failed(rel, message)``.
    """

    saved = Signal(object, object)
    failed = Signal(object, str)

    def __init__(self, store: CorrectedMasks) -> None:
        super().__init__()
        self.setObjectName("mask-saver")
        self.store = store
        self._pending: OrderedDict[str, tuple] = OrderedDict()
        self._condition = threading.Condition()
        self._busy = False
        self._stopping = False
        track(self)
        self.start()

    def save(self, rel: str, mask: np.ndarray, origin: dict) -> None:
        """Queue ``mask`` (copied) as ``rel``'s corrected mask."""
        self._queue(rel, ("save", mask.copy(), dict(origin)))

    def remove(self, rel: str) -> None:
        """Queue the removal of ``rel``'s corrected mask."""
        self._queue(rel, ("delete",))

    def _queue(self, rel: str, op: tuple) -> None:
        with self._condition:
            self._pending.pop(rel, None)
            self._pending[rel] = op
            self._condition.notify_all()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queued change is stored; return whether that happened in time."""
        with self._condition:
            return self._condition.wait_for(lambda: not self._pending and not self._busy, timeout_s)

    def stop(self) -> bool:
        """Store what is queued, then end the thread."""
        done = self.flush()
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        return self.wait(30000) and done

    def run(self) -> None:  # noqa: D102 - runs on the worker thread
        while True:
            with self._condition:
                self._busy = False
                self._condition.notify_all()
                self._condition.wait_for(lambda: self._pending or self._stopping)
                if not self._pending:
                    return
                rel, op = self._pending.popitem(last=False)
                self._busy = True
            try:
                if op[0] == "save":
                    self.saved.emit(rel, self.store.save(rel, op[1], **op[2]))
                else:
                    self.store.delete(rel)
                    self.saved.emit(rel, None)
            except Exception as error:  # reported on the GUI thread; the mask stays in the editor
                log.error("corrected mask of %s not stored: %s", rel, error)
                self.failed.emit(rel, describe_error(error))
