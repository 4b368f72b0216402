"""Segment a folder on a Ray cluster: Ray Data ``map_batches`` over a pool of actors that each hold the model.

Only this module imports Ray, and only ``lrpseg segment --engine ray`` imports this module (an import-linter
contract checks both), so the rest of lrpseg runs without Ray installed.

Where things happen:

- The driver (the ``lrpseg segment`` process) scans the folder, sends the model's bytes to the cluster once
  (object store), and writes every output into OUT with the same exporter as the local engine. Workers never
  write files, so OUT only has to exist where the driver runs.
- Workers read the images themselves: the image folder must be visible under the same path on every node
  (a shared file system). A worker that cannot see it stops the run at start-up with a message naming the host
  and the folder, instead of failing image by image.
- Each worker runs the local engine's batched stages (:func:`core.batched.segment_files`) on its share of the
  files and returns the analyses; results reach the driver in input order, so masks, names and the report are
  those of the local engine.

Faults: Ray restarts a killed worker actor and retries its batch (Ray Data's actor pools default to unlimited
restarts and task retries). Nothing is written until the driver has a complete result, and every file is
written atomically, so an interrupted driver leaves complete masks only, and the same command run again keeps
them and writes the missing ones.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import torch
from lrpseg.core.batched import EngineError, SegmentOptions, segment_files
from lrpseg.core.checkpoint import load_checkpoint
from lrpseg.core.pipeline import Outcome

__all__ = ["RayEngine", "RayOptions", "RaySetupError", "WorkerSetupError", "worker_count"]

#: Files per call of a worker: several LRP batches, so the worker's decode, LRP and segment stages overlap.
CALLS_PER_LRP_BATCHES = 4
WORKER_ERROR_MARK = "lrpseg worker cannot start:"


class RaySetupError(EngineError):
    """The cluster cannot run the job as asked (no GPUs, unreachable address, a worker without the images)."""


class WorkerSetupError(RuntimeError):
    """Raised by a worker that cannot do its job on its node; the message names the host and the reason."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run.

    Attributes
    ----------
    address
        ``None`` starts a local cluster for this run; ``"auto"`` joins the cluster started on this machine with
        ``ray start``; ``"ray://host:port"`` joins a remote one through Ray Client.
    workers
        Actors in the pool, each holding the model; ``None``: one per CPU of the cluster (per GPU share with
        ``gpus_per_worker``).
    gpus_per_worker
        GPUs reserved per actor (0: explain on the CPU); fractions share a GPU between actors.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be at least 1, not {self.workers}")
        if self.gpus_per_worker < 0:
            raise ValueError(f"--gpus-per-worker must not be negative, not {self.gpus_per_worker}")


def worker_count(options: RayOptions, resources: dict) -> int:
    """Actors to start: ``options.workers``, else what the cluster's CPUs (or GPUs) allow; refuses GPU requests
    the cluster cannot meet (Ray would wait for them forever)."""
    gpus = float(resources.get("GPU", 0))
    if options.gpus_per_worker > 0:
        if gpus < options.gpus_per_worker:
            raise RaySetupError(
                f"--gpus-per-worker {options.gpus_per_worker:g} asked, but the Ray cluster has {gpus:g} GPUs"
            )
        fit = int(gpus // options.gpus_per_worker)
        if options.workers is not None and options.workers > fit:
            raise RaySetupError(
                f"{options.workers} workers with {options.gpus_per_worker:g} GPU each need "
                f"{options.workers * options.gpus_per_worker:g} GPUs; the Ray cluster has {gpus:g}"
            )
        return options.workers or fit
    return options.workers or max(1, int(resources.get("CPU", 1)))


class SegmentWorker:
    """A Ray Data callable class: loads the model once, then analyses one batch of paths per call."""

    def __init__(self, model: ray.ObjectRef, options: SegmentOptions, folder: str, use_gpu: bool) -> None:
        if not os.path.isdir(folder):
            raise WorkerSetupError(
                f"{WORKER_ERROR_MARK} host {socket.gethostname()} cannot see the image folder {folder}; the "
                "images must be on a file system every node mounts under the same path"
            )
        with tempfile.TemporaryDirectory(prefix="lrpseg-ray-") as scratch:
            path = Path(scratch) / "model.safetensors"
            path.write_bytes(ray.get(model))
            self.model, _ = load_checkpoint(path)
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model.to(self.device)
        self.options = options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = list(segment_files([Path(p) for p in batch["path"]], self.model, self.options, self.device, 1))
        analyses = np.empty(len(outcomes), dtype=object)
        analyses[:] = [o.analysis and dataclasses.replace(o.analysis, explained=None) for o in outcomes]
        return {
            "index": batch["index"],
            "error": np.array([o.error or "" for o in outcomes], dtype=object),
            "analysis": analyses,
        }


def _setup_message(error: Exception) -> str | None:
    for line in str(error).splitlines():
        if WORKER_ERROR_MARK in line:
            return line[line.index(WORKER_ERROR_MARK) :]
    return None


class RayEngine:
    """A connection to a Ray cluster for one run: ``with RayEngine(options) as engine: engine.segment(...)``.

    Entering joins the cluster at ``options.address`` (or starts a local one) unless this process is already
    connected, and sizes the worker pool (:attr:`workers`); leaving disconnects what entering connected.

    Raises
    ------
    RaySetupError
        The cluster cannot be reached or lacks the GPUs asked for.
    """

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.workers = 0
        self._started = False

    def __enter__(self) -> RayEngine:
        if not ray.is_initialized():
            try:
                ray.init(address=self.options.address, log_to_driver=False, logging_level="ERROR")
            except ConnectionError as error:
                raise RaySetupError(f"cannot reach the Ray cluster at {self.options.address}: {error}") from None
            self._started = True
        try:
            self.workers = worker_count(self.options, ray.cluster_resources())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            ray.shutdown()
            self._started = False

    def segment(self, paths: Sequence[Path], model_path: Path, options: SegmentOptions) -> Iterator[Outcome]:
        """Analyse ``paths`` on the cluster; yield one :class:`Outcome` per path, in input order.

        Outcomes carry the analysis without its :class:`~core.pipeline.ExplainedImage` (which would only add
        traffic); everything the export needs is there.

        Raises
        ------
        RaySetupError
            A worker cannot see the images.
        """
        if not paths:
            return
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        resolved = [str(Path(p).resolve()) for p in paths]
        folder = os.path.dirname(resolved[0]) if len(resolved) == 1 else os.path.commonpath(resolved)
        gpus = self.options.gpus_per_worker
        dataset = ray.data.from_items([{"index": i, "path": path} for i, path in enumerate(resolved)]).map_batches(
            SegmentWorker,
            fn_constructor_args=(ray.put(Path(model_path).read_bytes()), options, folder, gpus > 0),
            batch_size=options.batch_size * CALLS_PER_LRP_BATCHES,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=1,
            num_gpus=gpus or None,
        )
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
                for index, error, analysis in zip(batch["index"], batch["error"], batch["analysis"], strict=True):
                    yield Outcome(Path(paths[int(index)]), analysis=analysis, error=error or None)
        except ray.exceptions.RayError as error:
            message = _setup_message(error)
            if message is None:
                raise
            raise RaySetupError(message) from None
