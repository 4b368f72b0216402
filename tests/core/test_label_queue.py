"""core.label_queue: label writes off the caller's thread keep order, durability, undo/redo and errors.

The store is made slow by a test double (:class:`GatedProject`), whose writes block until the test opens a gate,
so every check sees writes that are really still queued; nothing here sleeps or measures time.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from lrpseg.core.label_queue import LabelQueue, LabelWrite
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.project import Project, ProjectError, ProjectLockedError

IMAGES = ("a.png", "b.png", "c.png")


class GatedProject:
    """A real project whose label writes wait for ``gate`` (a network share's slow fsync, held open)."""

    def __init__(self, project: Project, fail: str | None = None) -> None:
        self.project = project
        self.gate = threading.Event()
        self.fail = fail  # writes of this image raise, as a locked database would
        self.writes: list[str] = []
        self.transactions = 0  # set_label_steps calls

    def __getattr__(self, name):
        return getattr(self.project, name)

    def _gated(self, what: str) -> None:
        self.gate.wait()
        self.writes.append(what)

    def set_label(self, rel, label):
        self._gated(f"set {rel}={label}")
        if rel == self.fail:
            raise ProjectLockedError(f"project {self.project.folder} is locked by another program")
        return self.project.set_label(rel, label)

    def set_label_steps(self, steps):
        self.gate.wait()
        self.transactions += 1
        self.writes += [f"set {rel}={label}" for step in steps for rel, label in step.items()]
        if any(self.fail in step for step in steps):
            raise ProjectLockedError(f"project {self.project.folder} is locked by another program")
        return self.project.set_label_steps(steps)

    def undo(self):
        self._gated("undo")
        return self.project.undo()

    def redo(self):
        self._gated("redo")
        return self.project.redo()


@pytest.fixture
def folder(tmp_path) -> Path:
    for rel in IMAGES:
        cv2.imwrite(str(tmp_path / rel), np.zeros((4, 4), np.uint8))
    return tmp_path


@pytest.fixture
def gated(folder):
    with Project.open(folder) as project:
        yield GatedProject(project)


def stored(folder: Path) -> dict[str, str]:
    """The labels on disk, read by a separate project (as another program or the next start would)."""
    with Project.open(folder) as other:
        return other.labels()


def test_reads_see_queued_labels_and_the_last_change_wins(gated, folder):
    done: list[LabelWrite] = []
    queue = LabelQueue(gated, done.append)
    queue.set_label("a.png", "damaged")
    queue.set_label("a.png", "undamaged")  # D then U on one image
    queue.set_label("b.png", "defect")  # a synonym, normalised
    queue.set_label("c.png", DAMAGED)
    queue.set_label("c.png", None)
    assert queue.pending() == 5 and not queue.wait(0)  # nothing written yet: the store is held
    assert stored(folder) == {}
    assert queue.label("a.png") == UNDAMAGED and queue.label("c.png") is None
    assert queue.labels() == {"a.png": UNDAMAGED, "b.png": DAMAGED}

    gated.gate.set()
    queue.close()
    assert gated.transactions <= 2  # the writer held in the first, the backlog written together in a second
    assert gated.writes == ["set a.png=damaged", "set a.png=undamaged", "set b.png=damaged",
                            "set c.png=damaged", "set c.png=None"]  # in the order asked
    assert [(w.kind, w.rel, w.error) for w in done][:2] == [("set", "a.png", None), ("set", "a.png", None)]
    assert stored(folder) == {"a.png": UNDAMAGED, "b.png": DAMAGED}
    assert queue.labels() == {"a.png": UNDAMAGED, "b.png": DAMAGED}  # the store now holds what the view held
    with Project.open(folder) as other:  # still one undo step per click
        assert len({event.step for event in other.history()}) == 5


def test_close_writes_everything_still_queued(gated, folder):
    queue = LabelQueue(gated)
    for rel in IMAGES:
        queue.set_label(rel, DAMAGED)
    closer = threading.Thread(target=queue.close)
    closer.start()
    while not queue.closed:  # a wait on the condition, not on time
        closer.join(0.01)
    with pytest.raises(ProjectError, match="closed"):  # closing refuses new changes ...
        queue.set_label("a.png", UNDAMAGED)
    assert closer.is_alive() and stored(folder) == {}  # ... and waits for the held writes
    gated.gate.set()
    closer.join()
    assert stored(folder) == {rel: DAMAGED for rel in IMAGES}
    assert queue.pending() == 0


def test_undo_and_redo_queue_behind_label_writes(gated, folder):
    done: list[LabelWrite] = []
    queue = LabelQueue(gated, done.append)
    queue.set_label("a.png", DAMAGED)
    queue.set_label("b.png", UNDAMAGED)
    queue.undo()  # b
    queue.undo()  # a
    queue.redo()  # a again
    assert queue.label("a.png") == DAMAGED  # undo's result is not known before it ran
    gated.gate.set()
    queue.wait()
    assert [(w.kind, w.rel) for w in done] == [("set", "a.png"), ("set", "b.png"), ("undo", "b.png"),
                                               ("undo", "a.png"), ("redo", "a.png")]
    assert queue.labels() == {"a.png": DAMAGED} == stored(folder)
    queue.set_label("c.png", UNDAMAGED)  # a new change drops the redo tail (b's undone step)
    queue.redo()
    queue.close()
    assert done[-1] == LabelWrite("redo", None, None, None)  # nothing to redo
    assert stored(folder) == {"a.png": DAMAGED, "c.png": UNDAMAGED}


def test_a_failed_write_is_reported_and_the_view_falls_back_to_the_store(folder):
    with Project.open(folder) as project:
        project.set_label("a.png", UNDAMAGED)
        gated = GatedProject(project, fail="a.png")
        done: list[LabelWrite] = []
        queue = LabelQueue(gated, done.append)
        queue.set_label("a.png", DAMAGED)
        queue.set_label("b.png", DAMAGED)
        assert queue.label("a.png") == DAMAGED
        gated.gate.set()
        queue.close()
    failed = [w for w in done if w.error is not None]
    assert [(w.kind, w.rel, w.label) for w in failed] == [("set", "a.png", DAMAGED)]
    assert "locked" in str(failed[0].error)
    assert stored(folder) == {"a.png": UNDAMAGED, "b.png": DAMAGED}  # later writes still made it


def test_bad_input_is_refused_before_queueing(gated):
    queue = LabelQueue(gated)
    with pytest.raises(ValueError):
        queue.set_label("a.png", "maybe")
    with pytest.raises(ValueError):
        queue.set_label("../a.png", DAMAGED)
    assert queue.pending() == 0
    queue.close()
    queue.close()  # twice is fine
    with pytest.raises(ProjectError, match="closed"):
        queue.undo()
