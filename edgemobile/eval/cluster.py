"""Scale eval and report out on a Ray cluster, with results identical to one machine.

The pattern is Ray's batch inference: the driver splits the image list into shards; a Ray task
runs the very function a single-process eval runs (:func:`edgemobile.eval.evaluate.run_predictors`)
on its shard with LiteRT and returns plain per-image probabilities; the driver puts them back in
the original order, and metrics are computed from the merged arrays by the same code as without
a cluster — so the JSON agrees to the last digit. Model bytes go into the object store once.
Shard sizes are whole batches, so every shard is inferred in exactly the batches one process
would use.

The driver owns ordering, the in-flight window, the progress bar and cancellation: a task whose
worker dies is retried by Ray (``max_retries``); finished shards are fetched into the driver as
they finish, so a dead worker loses nothing else; an error cancels every task still running, and Ctrl-C
ends them by disconnecting (see :meth:`RayCluster.drive`).

Data on workers (``data``): ``"bytes"`` (default) ships each image's encoded file inside its
shard, so workers need no access to the images; ``"paths"`` sends absolute paths, for clusters
where the data sits on a mount every node reads at the same path (nothing on the wire but paths).

Ray is imported only when a :class:`RayCluster` is made (``--cluster``); the worker-side
functions here import nothing from Ray.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from edgemobile.data.labels import imagenet_classes
from edgemobile.errors import EdgeMobileError, first_line, last_line
from edgemobile.eval.evaluate import run_predictors
from edgemobile.eval.predictors import TFLitePredictor
from edgemobile.progress import Progress

DATA_MODES = ("bytes", "paths")
DEFAULT_SHARD_SIZE = 64
MAX_RETRIES = 3
LOCAL_OBJECT_STORE_BYTES = 512 * 2**20
CONVERSION_CPUS = 1
DEFAULT_CONVERSION_MEMORY_GB = 4.0
# Ray binds every node to 127.0.0.1 when this is "0" (read when Ray is first imported).
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


# -- worker side (no Ray imports) ---------------------------------------------------------------
_PREDICTORS: dict = {}
_MODEL_DIR: list[str] = []


def _worker_predictor(name: str, model: bytes, overrides, threads):
    """A TFLitePredictor for ``model`` in this worker process, built once per model."""
    key = (name, hashlib.sha256(model).hexdigest(), overrides, threads)
    if key not in _PREDICTORS:
        if not _MODEL_DIR:
            _MODEL_DIR.append(tempfile.mkdtemp(prefix="edgemobile-worker-"))
        path = Path(_MODEL_DIR[0]) / f"{len(_PREDICTORS)}-{Path(name).name}"
        path.write_bytes(model)
        _PREDICTORS[key] = TFLitePredictor(path, overrides, num_threads=threads)
    return _PREDICTORS[key]


def eval_shard(specs: list[tuple], ids: list[int], items: list, batch_size: int, skip_bad: bool, *models: bytes):
    """One shard: (ids evaluated, probabilities of each model for them, skipped images as
    (id, path, reason)). ``specs`` are (name, overrides, threads) per model, ``models`` the
    model bytes (object-store refs that Ray resolves before the call). Without ``skip_bad`` an
    undecodable image fails the task with :class:`~edgemobile.errors.BadImageError`."""
    predictors = [_worker_predictor(name, model, overrides, threads)
                  for (name, overrides, threads), model in zip(specs, models)]
    skipped: list | None = [] if skip_bad else None
    probs = run_predictors(predictors, items, batch_size=batch_size, progress=False, workers=1, skipped=skipped)
    bad = {k for k, _, _ in skipped or []}
    return ([i for k, i in enumerate(ids) if k not in bad], probs,
            [(ids[k], str(path), reason) for k, path, reason in skipped or []])


# -- driver side --------------------------------------------------------------------------------
def _whole_batches(shard_size: int, batch_size: int) -> int:
    return max(1, -(-shard_size // batch_size)) * batch_size


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A GCS ``HOST:PORT`` that nothing listens on fails here at once (Ray itself retries for
    minutes); ``auto`` and ``ray://`` addresses fail fast in Ray already."""
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise EdgeMobileError(f"--cluster {address}: no Ray head answers there ({exc.strerror or exc})") from None


class RayCluster:
    """A connection to a Ray cluster: ``"local"`` starts one on this machine with all its cores,
    ``"auto"`` or ``"ray://HOST:PORT"`` (or a GCS ``HOST:PORT``) joins a running one."""

    def __init__(self, address: str, data: str = "bytes", shard_size: int = DEFAULT_SHARD_SIZE,
                 runtime_env: dict | None = None, num_cpus: int | None = None,
                 object_store_memory: int = LOCAL_OBJECT_STORE_BYTES, window: int | None = None):
        if data not in DATA_MODES:
            raise EdgeMobileError(f"--cluster-data must be one of {', '.join(DATA_MODES)}, got {data!r}")
        if shard_size <= 0:
            raise EdgeMobileError(f"--shard-size must be positive, got {shard_size}")
        if address == "local":
            # A cluster of this machine alone talks over loopback, never the host's network address.
            os.environ.setdefault(LOOPBACK_ONLY, "0")
        try:
            import ray
        except ImportError:
            raise EdgeMobileError("--cluster needs Ray: pip install 'edgemobile[cluster]'") from None
        self.ray, self.address, self.data, self.shard_size = ray, address, data, shard_size
        kwargs: dict = {"log_to_driver": False, "logging_level": logging.WARNING, "runtime_env": runtime_env}
        if address == "local":
            kwargs.update(address="local", num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                          object_store_memory=object_store_memory)
        else:
            _check_reachable(address)
            kwargs.update(address=address)
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = first_line(exc)
            raise EdgeMobileError(f"--cluster {address}: cannot start or join a Ray cluster ({first[:200]})") from None
        self.cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.window = window  # tasks in flight; None: two per CPU and two more

    def __enter__(self) -> "RayCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect (and stop the cluster ``local`` started)."""
        if self.ray.is_initialized():
            self.ray.shutdown()

    # -- eval ------------------------------------------------------------------------------
    def put_models(self, predictors: Sequence) -> tuple[list[tuple], list]:
        """(name, overrides, threads) per predictor and its model bytes in the object store."""
        for p in predictors:
            if getattr(p, "kind", None) != "tflite":
                raise EdgeMobileError(f"{p.name}: --cluster evaluates .tflite models only "
                                      "(convert a zoo model first, then use it as --reference)")
        specs = [(p.name, p.overrides, p.num_threads) for p in predictors]
        return specs, [self.ray.put(p.model.model_bytes) for p in predictors]

    def shard_jobs(self, specs: list[tuple], refs: list, items: Sequence, batch_size: int,
                   on_done: Callable[[list[int], list[np.ndarray], list], None],
                   skip_bad: bool = False) -> list["_Job"]:
        """One job per shard of ``items``; ``on_done(ids, probs, skipped)`` receives each result."""
        size = _whole_batches(self.shard_size, batch_size)
        task = self.ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(eval_shard)
        jobs = []
        for start in range(0, len(items), size):
            ids = list(range(start, min(start + size, len(items))))

            def submit(ids=ids):
                return task.remote(specs, ids, [self._ship(items[i]) for i in ids], batch_size, skip_bad, *refs)

            jobs.append(_Job(submit, len(ids), f"images {ids[0]}-{ids[-1]}",
                             lambda value: on_done(*value)))
        return jobs

    def _ship(self, path) -> str | tuple[str, bytes]:
        path = os.path.abspath(path)
        if self.data == "paths":
            return path
        try:
            return path, Path(path).read_bytes()
        except OSError as exc:
            raise EdgeMobileError(f"{path}: cannot be read ({exc.strerror or exc})") from None

    def run_predictors(self, predictors: Sequence, items: Sequence, batch_size: int = 16, progress: bool = True,
                       desc: str = "evaluating", skipped: list | None = None) -> list[np.ndarray]:
        """:func:`edgemobile.eval.evaluate.run_predictors`, sharded over the cluster (``skipped``
        as there: undecodable images are left out and recorded with their index in ``items``)."""
        specs, refs = self.put_models(predictors)
        merged = Merged(len(items), [len(p.classes) for p in predictors])
        bar = Progress(len(items), f"{desc} on {self.cpus} Ray CPUs") if progress else None
        self.drive(self.shard_jobs(specs, refs, items, batch_size, merged.place, skip_bad=skipped is not None), bar)
        if not merged.complete:
            raise EdgeMobileError("Ray eval: some shards came back without results")
        if skipped is not None:
            skipped.extend((index, Path(path), reason) for index, path, reason in merged.skipped)
        return merged.kept_outputs()

    # -- conversions -------------------------------------------------------------------------
    def conversion_task(self, fn: Callable, memory_gb: float):
        """``fn`` as a Ray task declaring what a conversion holds: one CPU and ``memory_gb`` of
        memory, in a fresh worker process each time (TensorFlow gives memory back only on exit)."""
        memory = int(memory_gb * 2**30)
        nodes = [n["Resources"] for n in self.ray.nodes() if n.get("Alive")]
        if not any(r.get("CPU", 0) >= CONVERSION_CPUS and r.get("memory", 0) >= memory for r in nodes):
            most = max((r.get("memory", 0) for r in nodes), default=0) / 2**30
            raise EdgeMobileError(f"--conversion-memory {memory_gb:g}: no node of the cluster has that much "
                                  f"memory (at most {most:.1f} GB) and {CONVERSION_CPUS} CPU free to offer")
        return self.ray.remote(num_cpus=CONVERSION_CPUS, memory=memory, max_retries=MAX_RETRIES, max_calls=1)(fn)

    # -- the driver loop ---------------------------------------------------------------------
    def drive(self, jobs: list["_Job"], bar: Progress | None, window: int | None = None) -> None:
        """Run ``jobs`` (and the jobs their ``on_done`` returns) with at most ``window`` in flight.

        Results are fetched as soon as a task finishes. A task's own error (a bad image) ends
        the run as that one-line error; any error cancels every task still running (Ctrl-C: see below)."""
        ray = self.ray
        window = window or self.window or 2 * self.cpus + 2
        queue = list(jobs)
        pending: dict = {}
        try:
            while queue or pending:
                while queue and len(pending) < window:
                    job = queue.pop(0)
                    pending[job.submit()] = job
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    value = self._get(ref, job)
                    more = job.on_done(value)
                    queue[:0] = more or []
                    if bar:
                        bar.update(job.weight)
        except KeyboardInterrupt:
            # Not ray.cancel: in Ray 2.60 a cancel that races a task's reply aborts this process
            # ("Tried to complete task that was not pending", ray-project/ray#54798 and kin) —
            # measured on 1 Ctrl-C in 6. The interrupted process disconnects (cluster_session,
            # the CLI), and a driver's tasks end with it.
            raise
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            if bar:
                bar.close()

    def _get(self, ref, job: "_Job"):
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, EdgeMobileError):  # keep the kind (a BadImageError gets its CLI hint)
                raise type(cause)(str(cause)) from None
            first = last_line(cause or exc)
            raise EdgeMobileError(f"Ray task for {job.what} failed: {first[:300]}") from None
        except ray.exceptions.RayError as exc:
            first = first_line(exc)
            raise EdgeMobileError(f"Ray task for {job.what} failed after {MAX_RETRIES} retries: "
                                  f"{first[:300]}") from None


class Merged:
    """Per-image outputs of ``len(classes)`` models for ``count`` images, filled shard by shard
    in whatever order shards finish, read in the original order."""

    def __init__(self, count: int, classes: list[int]):
        self.count = count
        self.outputs = [np.zeros((count, c), np.float32) for c in classes]
        self.filled = np.zeros(count, bool)
        self.skipped: list[tuple[int, str, str]] = []

    def place(self, ids: list[int], probs: list[np.ndarray], skipped: list = ()) -> None:
        self.skipped.extend(skipped)
        self.filled[[index for index, _, _ in skipped]] = True
        for k, pr in enumerate(probs):
            if self.outputs[k].shape[1:] != pr.shape[1:] or self.outputs[k].dtype != pr.dtype:
                # first shard: take the shape and dtype the predictor returns, bit for bit
                self.outputs[k] = np.zeros((self.count, *pr.shape[1:]), pr.dtype)
            self.outputs[k][ids] = pr
        self.filled[ids] = True

    @property
    def complete(self) -> bool:
        return bool(self.filled.all())

    def kept_outputs(self) -> list[np.ndarray]:
        """The outputs without the skipped images' rows, as one process returns them."""
        if not self.skipped:
            return self.outputs
        keep = np.ones(self.count, bool)
        keep[[index for index, _, _ in self.skipped]] = False
        return [o[keep] for o in self.outputs]


def run_report_jobs(cluster: RayCluster, convert: Callable, specs: list, jobs: list[tuple], calibration,
                    paths: list, memory_gb: float, progress: bool, batch_size: int = 16, target=None) -> dict:
    """``{job: (conversion, probabilities or None)}`` for report ``jobs`` ((spec index, label,
    config or None for float32)): each conversion ``convert(spec, calibration, config,
    target=target)`` is a Ray task declaring its CPU and memory and returns plain data with the
    model's bytes in ``.tflite`` (None: no model, nothing to evaluate); as soon as one finishes,
    its model goes into the object store and its eval is sharded like ``eval --cluster``."""
    task = cluster.conversion_task(convert, memory_gb)
    shards = -(-len(paths) // _whole_batches(cluster.shard_size, batch_size))
    results: dict = {}

    def conversion(job: tuple) -> _Job:
        k, _, config = job
        name = f"{specs[k].variant().name} {'float32' if config is None else 'int8'}.tflite"

        def done(converted) -> list[_Job]:
            if converted.tflite is None:  # no model (a missed accuracy target): no eval
                results[job] = (converted, None)
                if bar:
                    bar.total -= shards
                return []
            merged = Merged(len(paths), [len(imagenet_classes())])
            results[job] = (converted, merged)
            evals = cluster.shard_jobs([(name, None, 1)], [cluster.ray.put(converted.tflite)], paths, batch_size,
                                       merged.place)
            for e in evals:
                e.weight = 1  # the bar counts tasks
            return evals

        return _Job(lambda: task.remote(specs[k], calibration, config, target=target), 1, f"converting {name}", done)

    bar = Progress(len(jobs) * (1 + shards), f"report on {cluster.cpus} Ray CPUs", unit="task") if progress else None
    cluster.drive([conversion(job) for job in jobs], bar)
    for job, (_, merged) in results.items():
        if merged is not None and not merged.complete:
            raise EdgeMobileError(f"Ray report: the eval of job {job} came back incomplete")
    return {job: (converted, merged.outputs[0] if merged is not None else None)
            for job, (converted, merged) in results.items()}


class _Job:
    """A task to submit: ``submit()`` → ObjectRef; ``on_done(value)`` → further jobs or None;
    ``weight``: its share of the progress bar."""

    def __init__(self, submit: Callable, weight: int, what: str, on_done: Callable):
        self.submit, self.weight, self.what, self.on_done = submit, weight, what, on_done
