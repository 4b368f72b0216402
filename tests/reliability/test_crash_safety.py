"""SIGKILL during labelling, training and export, then reopen: no committed label lost, no half-written file
under a final name, the last good model still loads.

Each fault is a real ``SIGKILL`` of a child process running a small Python snippet against ``core``. Where the
moment matters (between writing a temporary file and renaming it), the child announces it and waits there, so
the kill lands exactly at that point; elsewhere the kill lands wherever the child happens to be.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from lrpseg.core.checkpoint import load_checkpoint
from lrpseg.core.cli import main as lrpseg_main
from lrpseg.core.demo import make_demo
from lrpseg.core.export_layout import export_masks
from lrpseg.core.images import read_image
from lrpseg.core.project import Project
from reliability_helpers import (
    LABELLER,
    PYTHON,
    ROOT,
    apply_op,
    child_env,
    label_ops,
    project_state,
    save_slim_model,
    temp_leftovers,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

# Makes core.atomic stop, announced on stdout, just before its n-th call of ``point`` ("replace": the rename
# of a finished temporary file onto the final name; "fsync_dir": right after that rename).
_PAUSE = """
import os, sys, time
import lrpseg.core.atomic as atomic

def pause_at(point, nth=1):
    calls = [0]
    def stop(real):
        def wrapper(*args, **kwargs):
            calls[0] += 1
            if calls[0] >= nth:
                print("paused at", point, calls[0], args[-1] if args else "", flush=True)
                time.sleep(600)
            return real(*args, **kwargs)
        return wrapper
    if point == "replace":
        class Os:
            def __getattr__(self, name):
                return getattr(os, name)
        proxy = Os()
        proxy.replace = stop(os.replace)
        atomic.os = proxy
    elif point == "fsync_dir":
        atomic._fsync_dir = stop(atomic._fsync_dir)
"""


def _spawn(code: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-c", code, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=ROOT,
    )


def _kill_when(child: subprocess.Popen, ready, timeout: float = 120) -> list[str]:
    """Read the child's lines until ``ready(lines)``, SIGKILL it, and return every line it printed."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while not ready(lines):
            line = child.stdout.readline()
            if not line:
                raise AssertionError(f"child ended early: {child.stderr.read()[-3000:]}")
            lines.append(line.strip())
            assert time.monotonic() < deadline, "child too slow"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    lines += [line.strip() for line in child.stdout.read().splitlines()]  # printed before the kill landed
    child.stdout.close()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return lines


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------------ labelling


def test_sigkill_while_labelling_loses_no_committed_label(tmp_path):
    """Five kills at different moments of one project's life; after each, the reopened project equals a
    reference that applied exactly the operations the child had reported committed (or one more: the one
    in flight may have committed just before the kill)."""
    folder, reference_folder = tmp_path / "project", tmp_path / "reference"
    folder.mkdir()
    reference_folder.mkdir()
    reference = Project.open(reference_folder)
    committed_total = 0
    in_flight_committed = 0
    for seed, kill_after in enumerate((1, 7, 23, 40, 61), start=1):
        child = _spawn(LABELLER, folder, seed)
        lines = _kill_when(child, lambda lines, n=kill_after: len(lines) >= n)
        committed = sum(line.startswith("committed") for line in lines)
        ops = label_ops(seed, 5000)
        for op in ops[:committed]:
            apply_op(reference, op)
        with Project.open(folder) as reopened:
            state = project_state(reopened)
            if state != project_state(reference):  # the op in flight committed before the kill
                apply_op(reference, ops[committed])
                in_flight_committed += 1
            assert state == project_state(reference), f"kill {seed}: after {committed} committed operations"
            reopened.set_label("after/reopen.png", "damaged")  # the reopened project takes writes again
            reference.set_label("after/reopen.png", "damaged")
        committed_total += committed
        cache = folder / ".lrpseg" / "cache"
        for npy in cache.glob("[!.]*.npy"):  # every file under a final name is complete
            assert np.load(npy, allow_pickle=False).shape == (64, 64)
    reference.close()
    conn = __import__("sqlite3").connect(folder / ".lrpseg" / "project.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    print(
        f"labelling: 5 SIGKILLs, {committed_total} operations reported committed, 0 lost, "
        f"{in_flight_committed} in-flight operations found committed"
    )


# ------------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo folder: 3 damaged + 3 undamaged images of 48 px."""
    root = make_demo(tmp_path_factory.mktemp("demo"), n_damaged=3, n_undamaged=3, size=48, seed=3)
    return root / "images"


_TRAINER = (
    _PAUSE
    + """
import torch
torch.set_num_threads(1)
from pathlib import Path
from lrpseg.core.labels import labels_from_folders
from lrpseg.core.train import TrainConfig, train_to_checkpoint
images, out, stage = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
labels = labels_from_folders(images)
rels = sorted(labels)
if stage != "training":
    pause_at(stage)
config = TrainConfig(width=0.125, input_size=32, epochs=1 if stage != "training" else 500, batch_size=4,
                     device="cpu", patience=1000)
train_to_checkpoint([images / r for r in rels], [labels[r] for r in rels], config, out,
                    progress=lambda p: print("progress", p.epoch, p.step, flush=True))
print("finished", flush=True)
"""
)


@pytest.mark.parametrize(
    "stage, ready, final",
    [
        ("training", lambda lines: sum(line.startswith("progress") for line in lines) >= 4, "old"),
        ("replace", lambda lines: any(line.startswith("paused") for line in lines), "old"),
        ("fsync_dir", lambda lines: any(line.startswith("paused") for line in lines), "new"),
    ],
)
def test_sigkill_while_training_keeps_the_last_good_model(demo, tmp_path, stage, ready, final):
    models = tmp_path / "models"
    models.mkdir()
    out = models / "model.safetensors"
    save_slim_model(out, input_size=32, seed=11)  # the last good model
    old = _sha(out)
    lines = _kill_when(_spawn(_TRAINER, demo, out, stage), ready)
    assert "finished" not in lines
    model, meta = load_checkpoint(out)  # loads: complete, whatever the moment of the kill
    assert meta["input_size"] == 32
    assert (_sha(out) == old) == (final == "old")
    assert [p.name for p in models.iterdir() if not p.name.startswith(".")] == ["model.safetensors"]
    for leftover in temp_leftovers(models):  # hidden temporary files may stay behind; never a final name
        assert leftover.name.startswith(".model.safetensors.")


# ------------------------------------------------------------------------------------------------ export
_EXPORTER = (
    _PAUSE
    + """
from lrpseg.core.cli import main
images, model, out, overwrite, nth = sys.argv[1:6]
if int(nth):
    pause_at("replace", int(nth))
argv = ["segment", images, "--model", model, "--out", out, "--device", "cpu"]
main(argv + (["--overwrite"] if overwrite == "1" else []))
print("finished", flush=True)
"""
)


def _check_export_folder(out: Path, untouched: dict[Path, bytes]) -> int:
    """Every file under a final name is either an untouched old file or complete; returns masks seen."""
    masks = 0
    mask_paths = set(export_masks(out).values())
    for path in sorted(p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")):
        masks += path in mask_paths
        if path in untouched and path.read_bytes() == untouched[path]:
            continue
        if path.suffix == ".png":
            read_image(path)  # refuses truncated PNGs (no complete IEND chunk)
        elif path.suffix == ".npy":
            np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    return masks


def test_sigkill_during_export_leaves_only_complete_files(demo, tmp_path):
    model = tmp_path / "slim.safetensors"
    save_slim_model(model, input_size=32)
    out = tmp_path / "out"
    out.mkdir()
    images = sorted(p for p in demo.rglob("*.png"))
    mask_of = {image: out / image.relative_to(demo).with_suffix(".png") for image in images}  # the tree is kept
    old = {}
    for image in images[:2]:  # masks a user already has, replaced by this run (--overwrite)
        path = mask_of[image]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(Path(image).read_bytes())  # any complete PNG will do
        old[path] = path.read_bytes()
    # Kill while the 4th file (mask, score .npy, score .png per image: the 2nd image's mask) waits, complete,
    # under its temporary name to be renamed over an existing mask.
    child = _spawn(_EXPORTER, demo, model, out, 1, 4)
    lines = _kill_when(child, lambda lines: any(line.startswith("paused") for line in lines))
    assert "finished" not in lines
    paused = next(line for line in lines if line.startswith("paused"))
    masks_before = _check_export_folder(out, old)  # old files, or complete new ones: nothing torn
    assert masks_before >= 2
    assert not (out / "lrpseg-report.json").exists()  # written last, only by a finished run
    assert len(temp_leftovers(out)) == 1, paused  # the one file caught between write and rename
    assert old[mask_of[images[1]]] == mask_of[images[1]].read_bytes()  # not replaced

    # Reopen: finish the export without --overwrite; what is there is kept, the rest is written.
    code = lrpseg_main(["segment", str(demo), "--model", str(model), "--out", str(out), "--device", "cpu"])
    assert code == 0
    assert _check_export_folder(out, old) == len(images)
    report = json.loads((out / "lrpseg-report.json").read_text(encoding="utf-8"))
    assert report["summary"]["errors"] == 0
    assert report["summary"]["kept_existing"] == masks_before
    assert report["summary"]["masks_written"] == len(images) - masks_before
