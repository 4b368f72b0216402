"""Shared pieces of the reliability tests and scripts: child processes, privileges, memory, small models."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PYTHON = sys.executable


def lrpseg_script() -> str:
    """The installed ``lrpseg`` console script (beside the running interpreter), else the one on PATH."""
    local = Path(PYTHON).with_name("lrpseg")
    return str(local) if local.exists() else (shutil.which("lrpseg") or "lrpseg")


def child_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: the repository importable, one CPU thread each (the machine is
    shared), unbuffered output so the parent sees every line the moment it is printed."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), str(HERE), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        **extra,
    )
    return env


def run_python(code: str, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run a Python snippet in a fresh interpreter and return the completed process (text output)."""
    return subprocess.run(
        [PYTHON, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
        cwd=ROOT,
        **kwargs,
    )


# ------------------------------------------------------------------------------------------ privileges
# As root, file modes do not stop reads: CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH bypass them. Clearing those
# two from the effective capability set (and restoring them afterwards) makes a mode-000 file unreadable for
# this process, without changing user.
_CAP_DAC = (1 << 1) | (1 << 2)
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _set_dac(enabled: bool) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        return False
    if enabled:
        data[0].effective |= _CAP_DAC & data[0].permitted
    else:
        data[0].effective &= ~_CAP_DAC
    return libc.capset(ctypes.byref(header), data) == 0


def drop_dac_override() -> None:
    """``preexec_fn`` for child processes: file permissions apply even when running as root.

    A root process regains every capability of its bounding set when it executes a program, so the two
    capabilities leave the bounding set too (``PR_CAPBSET_DROP``), not only the effective set.
    """
    if os.geteuid() == 0 and sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
        _set_dac(False)


@contextlib.contextmanager
def without_dac_override() -> Iterator[bool]:
    """Within the block file permissions apply to this process even as root; yields whether they do."""
    if os.geteuid() != 0:
        yield True
        return
    dropped = _set_dac(False)
    try:
        yield dropped
    finally:
        if dropped:
            _set_dac(True)


def permissions_enforced() -> bool:
    """Whether a mode-000 file can be made unreadable here (non-root, or root able to drop capabilities)."""
    with without_dac_override() as enforced:
        return enforced


# ------------------------------------------------------------------------------------------ memory
def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (default: this one) in MiB, from ``/proc/<pid>/status``."""
    with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line")


# ------------------------------------------------------------------------------------------ models
def save_slim_model(path: Path, input_size: int = 32, head: str = "128n", width: float = 0.125, seed: int = 0):
    """Write a randomly initialised slim VGG-A checkpoint (enough to exercise loading and the pipeline)."""
    import torch
    from lrpseg.core.checkpoint import save_checkpoint
    from lrpseg.core.models import build_vgg_a

    torch.manual_seed(seed)
    model = build_vgg_a(head, width=width, input_size=input_size)
    save_checkpoint(path, model, training={"note": "random weights for reliability tests", "seed": seed})
    return model


def snapshot(paths: list[Path]) -> dict[Path, tuple[bytes, int]]:
    """Bytes and modification time of files, to prove later that nothing touched them."""
    return {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in paths}


def temp_leftovers(folder: Path) -> list[Path]:
    """Temporary files of :mod:`core.atomic` left in ``folder`` (recursively)."""
    return sorted(p for p in folder.rglob(".*.tmp") if p.is_file())


# ------------------------------------------------------------------------------------------ label sessions
LABEL_RELS = [f"sub{i % 3}/img{i:03d}.png" for i in range(40)]


def label_ops(seed: int, count: int) -> list[tuple]:
    """A reproducible session of project operations: labels, imports, undo/redo, thresholds, cache writes."""
    import random

    rng = random.Random(seed)
    rels = LABEL_RELS
    choices = ["damaged", "undamaged", None]
    ops: list[tuple] = []
    for index in range(count):
        roll = rng.random()
        if roll < 0.6:
            ops.append(("label", rng.choice(rels), rng.choice(choices)))
        elif roll < 0.68:
            ops.append(("import", tuple((rng.choice(rels), rng.choice(choices[:2])) for _ in range(5))))
        elif roll < 0.78:
            ops.append(("undo",))
        elif roll < 0.85:
            ops.append(("redo",))
        elif roll < 0.92:
            ops.append(("threshold", rng.choice(rels), round(rng.random(), 3)))
        else:
            ops.append(("relevance", rng.choice(rels), float(seed * 10_000 + index)))
    return ops


#: A child process: ``python -c LABELLER FOLDER SEED`` runs ``label_ops(SEED, 5000)`` on the project of
#: FOLDER and prints ``committed <index>`` after each operation returned (i.e. was committed).
LABELLER = """
import sys
from lrpseg.core.project import Project
from reliability_helpers import apply_op, label_ops
folder, seed = sys.argv[1], int(sys.argv[2])
project = Project.open(folder)
for index, op in enumerate(label_ops(seed, 5000)):
    apply_op(project, op)
    print("committed", index, flush=True)
"""


def apply_op(project, op: tuple) -> None:
    """Apply one operation of :func:`label_ops` to a :class:`core.project.Project`."""
    import numpy as np

    kind = op[0]
    if kind == "label":
        project.set_label(op[1], op[2])
    elif kind == "import":
        project.set_labels(dict(op[1]))
    elif kind == "undo":
        project.undo()
    elif kind == "redo":
        project.redo()
    elif kind == "threshold":
        project.set_threshold_override(op[1], "ours/bmm", op[2])
    else:
        project.store_relevance(op[1], "model", "ours", np.full((64, 64), op[2], np.float32))


def project_state(project) -> dict:
    """Everything a user could lose: labels, undo history (without times), overrides, cached maps."""
    history = [(e.step, e.rel, e.old_label, e.new_label, e.undone) for e in project.history(limit=100_000)]
    cached = {}
    for rel in LABEL_RELS:
        array = project.load_relevance(rel, "model", "ours")
        if array is not None:
            cached[rel] = float(array[0, 0]) if array.shape == (64, 64) else "wrong shape"
    return {
        "labels": project.labels(include_missing=True),
        "history": history,
        "thresholds": project.threshold_overrides("ours/bmm"),
        "cached": cached,
    }
