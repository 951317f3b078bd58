"""Training the paper's network (Section 2.2, Theorem 3.4): SGD with and without RandomMask, weight decay, the bias
schedule of footnote 3, supervised training for comparison, history, checkpoints.

Objective. ``Obj = E[L(f, x⁺, x⁺⁺, N)] + λ Σ_i ||w_i||²`` with RandomMask, ``Obj_NA = E[L(f, x, x, N)] + λ Σ_i
||w_i||²`` without (Section 2.2), ``L`` the contrastive loss of :mod:`fdcheck.loss` (stop-gradient on the second
view and on the negatives). The weight-decay gradient is ``2 λ w_i`` (the exact gradient of ``λ ||w_i||²``), so a
step is ``W ← (1 − 2 η λ) W − η ∇_W L``. Training is *population* SGD, as in the paper: every step draws ``batch``
fresh positives and ``negatives`` fresh negatives from the data model (Definition 2.1); the negatives are not
augmented and are shared by the positives of the step. Initialisation ``w_i ~ N(0, init_std² I)``, ``b = 0``.

Bias schedule (footnote 3). The seed renders the footnote only partly (``shared/MODEL.md`` quotes it). This module
reads it as follows, with every choice a named field of :class:`~fdcheck.config.ModelConfig`:

* ``b = 0`` for steps ``t < t1``. The paper fixes ``T1`` by the norms of the neurons (``Θ(d log d/(η log log d))``
  iterations, "when all ``||w_i||`` reach ``γ c0 ||w_i(0)||``"); here ``t1`` is a configured step (a quarter of
  the steps in :meth:`ModelConfig.scaled`), which is what the garbled condition amounts to at fixed ``d``.
* At ``t = t1``: ``b_i = bias_init_factor · √(2 log d / d) · ||w_i(t1)||``. The paper's factor is 1; the measured
  regime uses 0.6 (``shared/REGIMES.md``: at factor 1 too few atoms stayed above threshold).
* After every later update: ``b_i ← min(b_i (1 + max(bias_growth_min, ||w_i(t+1)|| / ||w_i(t)|| − 1)),
  bias_cap_factor · ||w_i(t+1)||)``. The paper's ``η_{b,t} = max{η/d, ...}`` is ``bias_growth_min`` (``η/(2d)``
  in the scaled regime), and its stopping rule "while ``b_i ≤ polylog(d)/√d``" is a cap *relative to*
  ``||w_i||`` because ``||w||`` has no fixed scale in a finite run; the cap also lowers ``b_i`` when ``||w_i||``
  shrinks, so the threshold never exceeds ``bias_cap_factor`` of the neuron's norm.
* ``bias="none"`` keeps ``b = 0`` throughout (Theorem 3.2 lets the biases be anything that keeps neurons alive).

Supervised mode (``augment="supervised"``, the paper's Figure 1 comparison): the same network ``f`` with a linear
head ``V`` ``(d, m)`` (initialised to 0), trained jointly by SGD on the squared loss ``mean_i ||V f(x_i) − z_i||²``
(the label is the sparse code ``z``), the same weight decay on ``W`` (none on ``V``) and the same bias schedule.

Randomness (the seeds contract, see :func:`make_model`): training draws come from ``train_rng`` only, split into
``NOISE_STREAMS`` child streams, each owning a fixed block of the step's sample rows. The streams are filled in
parallel threads, but which stream fills which rows never depends on the number of threads or their timing, so a
run is bit-identical for any ``threads``. On NumPy the Gaussian noise is drawn by the Box–Muller transform of
float32 uniforms (exact Gaussian up to float32 resolution: ``|ξ_k| ≤ 5.77 σ``, a tail of probability 8·10⁻⁹),
which is about twice as fast here as NumPy's float32 ziggurat (``benchmarks/README.md``).

The hot loop is one fused step per iteration (:func:`_contrastive_step`, :func:`_supervised_step`): all views
and negatives go through one matrix product, ``f = u − clip(u, −b, b)`` (the soft threshold, equal to
``network.activation`` for ``b ≥ 0``), no per-sample Python, float32 throughout, preallocated buffers. A test asserts
that its gradient equals :func:`fdcheck.loss.contrastive_loss_and_grad` on the same inputs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._atomic import atomic_savez
from .backend import Random, array_namespace, get_namespace, is_cupy_namespace, to_numpy
from .config import ModelConfig
from .data import SparseCodingModel
from .network import init_weights

__all__ = ["NOISE_STREAMS", "TrainResult", "TrainingDiverged", "blas_thread_limit", "make_model", "train"]

NOISE_STREAMS = 4  # fixed, so the draws do not depend on the number of threads
_CHECKPOINT_FORMAT = 1


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or weights; the message names the step, the quantity and a remedy."""


@dataclass
class TrainResult:
    """A trained network and how it got there.

    Attributes:
        config: the run's configuration.
        W: ``(m, d1)`` trained weights.
        b: ``(m,)`` trained biases.
        W0: ``(m, d1)`` the initial weights.
        M: ``(d1, d)`` the dictionary of the data model.
        head: ``(d, m)`` the linear head of a supervised run, else ``None``.
        history: one dict per evaluation (every ``eval_every`` steps and at the end), see :func:`train`.
        seconds: wall-clock seconds spent training (summed over resumed segments).
    """

    config: ModelConfig
    W: Any
    b: Any
    W0: Any
    M: Any
    head: Any = None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def save_npz(self, path: str | os.PathLike) -> None:
        """Write the result atomically to ``path`` (``.npz``, readable with ``numpy.load(allow_pickle=False)``).

        Keys: ``W``, ``b``, ``W0``, ``M``, ``config`` (JSON of ``ModelConfig.to_dict()``), ``history`` (JSON),
        ``seconds``, and ``head`` for a supervised run.
        """
        arrays = {
            "W": to_numpy(self.W),
            "b": to_numpy(self.b),
            "W0": to_numpy(self.W0),
            "M": to_numpy(self.M),
            "config": np.array(self.config.to_json()),
            "history": np.array(json.dumps(self.history, allow_nan=False)),
            "seconds": np.array(float(self.seconds)),
        }
        if self.head is not None:
            arrays["head"] = to_numpy(self.head)
        for name in ("W", "b", "W0", "head"):
            if name in arrays and not np.all(np.isfinite(arrays[name])):
                raise ValueError(f"refusing to write non-finite {name} to {os.fspath(path)!r}")
        atomic_savez(path, arrays)

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> "TrainResult":
        """Read a file written by :meth:`save_npz` (NumPy arrays, whatever backend trained it)."""
        with np.load(path, allow_pickle=False) as data:
            return cls(
                config=ModelConfig.from_dict(json.loads(str(data["config"]))),
                W=data["W"],
                b=data["b"],
                W0=data["W0"],
                M=data["M"],
                head=data["head"] if "head" in data.files else None,
                history=json.loads(str(data["history"])),
                seconds=float(data["seconds"]) if "seconds" in data.files else 0.0,
            )


def make_model(config: ModelConfig, xp: Any = None, M: Any = None) -> tuple[SparseCodingModel, dict[str, Random]]:
    """The data model and the four random streams of a run (the seeds contract).

    ``root = Random(config.seed, xp)``; ``dict, init, train, eval = root.spawn(4)``. The dictionary comes from
    ``dict`` (unless ``M`` is given, then it is validated), ``W0`` from ``init``, training samples from ``train``
    and every post-training measurement from ``eval``; runs with the same seed and ``d`` share ``M`` and ``W0``.

    Args:
        config: the run's configuration.
        xp: array namespace (default: the one of ``config.backend``).
        M: optional ``(d1, d)`` column-orthonormal dictionary to use instead of drawing one.

    Returns:
        ``(model, rngs)`` with ``rngs`` the dict ``{"dict", "init", "train", "eval"}`` of :class:`Random`.
    """
    if xp is None:
        xp = get_namespace(config.backend)
    root = Random(config.seed, xp)
    rngs = dict(zip(("dict", "init", "train", "eval"), root.spawn(4)))
    if M is not None:  # a user's dictionary, in the run's namespace and dtype (validated by from_config)
        M = xp.asarray(to_numpy(M) if _is_numpy(xp) else M, dtype=getattr(xp, config.dtype))
    model = SparseCodingModel.from_config(config, rngs["dict"], M=M)
    return model, rngs


def train(config: ModelConfig, *, M: Any = None, progress: bool | None = None,
          checkpoint_path: str | os.PathLike | None = None, checkpoint_every: int | None = None,
          threads: int | None = None) -> TrainResult:
    """Train the network of ``config`` (see the module docstring for the objective and the bias schedule).

    Args:
        config: the run's configuration (``augment``, ``bias``, sizes, ``eta``, ``lam``, ``steps``, ...).
        M: optional dictionary to use instead of the seed's.
        progress: show a progress bar on stderr; ``None`` shows one when stderr is a terminal.
        checkpoint_path: if given, an ``.npz`` checkpoint written atomically every ``checkpoint_every`` steps
            (default ``config.eval_every``); if the file exists, training resumes from it, and the result is
            bit-identical to an uninterrupted run (NumPy backend only).
        checkpoint_every: steps between checkpoints (needs ``checkpoint_path``).
        threads: threads drawing the random numbers (default ``$FDCHECK_THREADS``, else ``$OMP_NUM_THREADS``,
            else ``min(4, cpu count)``); the result does not depend on it. BLAS runs on one thread during
            training unless the environment sets its thread count (see :func:`blas_thread_limit`).

    Returns:
        A :class:`TrainResult`. ``history`` has a row at steps ``0, eval_every, 2 eval_every, ...`` and at
        ``steps``, each with: ``step``; ``loss``, the training loss of the row's weights on that step's fresh
        batch; ``loss_window``, the mean loss since the previous row; ``objective`` (``loss + λ Σ||w_i||²``;
        for supervised runs the squared loss plus decay); ``w_norm_mean``, ``w_norm_max``; ``b_mean``;
        ``b_rel_mean`` (mean ``b_i/||w_i||``); ``span_energy`` and ``top_atom_share`` (means over neurons of
        ``||P_M w_i||²/||w_i||²`` and ``max_j <w_i, M_j>²/||w_i||²``); ``active_frac`` (share of non-zero
        ``f_i`` on the batch's first views); ``seconds``; and ``head_norm`` for supervised runs.

    Raises:
        ValueError: bad arguments, or a checkpoint written for another configuration.
        TrainingDiverged: the loss or the weights became non-finite; nothing is returned or written.
    """
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config must be a ModelConfig, got {type(config).__name__}")
    if progress is not None and not isinstance(progress, bool):
        raise ValueError(f"progress={progress!r} must be True, False or None")
    if checkpoint_every is not None:
        if checkpoint_path is None:
            raise ValueError("checkpoint_every needs checkpoint_path")
        if isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every={checkpoint_every!r} must be an integer >= 1")
    threads = _resolve_threads(threads)
    xp = get_namespace(config.backend)
    if checkpoint_path is not None and not _is_numpy(xp):
        raise ValueError(f"checkpoint_path needs backend='numpy' (random state of backend={config.backend!r} "
                         "cannot be saved exactly)")
    model, rngs = make_model(config, xp, M=M)
    W0, _ = init_weights(config.m, config.d1, config.init_std, rngs["init"], config.dtype)
    run = _Run(config, model, W0, rngs["train"], threads)
    if checkpoint_path is not None and os.path.exists(checkpoint_path):
        run.restore(checkpoint_path)
    every = checkpoint_every if checkpoint_every is not None else config.eval_every
    show = sys.stderr.isatty() if progress is None else progress
    try:
        with blas_thread_limit():
            run.loop(show, checkpoint_path, every)
    finally:
        run.close()
    return TrainResult(config=config, W=run.W, b=run.b, W0=W0, M=model.M, head=run.V, history=run.history,
                       seconds=run.seconds)


# ----------------------------------------------------------------------------------------------------------------
# The run: state, loop, bias schedule, history, checkpoints.


class _Run:
    """Mutable training state of one run, and the loop over steps."""

    def __init__(self, config: ModelConfig, model: SparseCodingModel, W0: Any, train_rng: Random,
                 threads: int) -> None:
        c = config
        self.c = c
        self.model = model
        self.xp = array_namespace(W0)
        self.nx = _native_module(W0)  # numpy or cupy for the fused step; None -> the generic array-API step
        self.W = _copy(self.xp, W0)
        self.b = self.xp.zeros((c.m,), dtype=W0.dtype)
        self.V = self.xp.zeros((c.d, c.m), dtype=W0.dtype) if c.augment == "supervised" else None
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.window = [0.0, 0]  # sum and count of the losses since the last history row
        self.seconds = 0.0
        self.norms = _row_norms(self.xp, self.W)
        self.source = _make_source(c, model, train_rng, threads)
        self.ws = _Workspace(self.nx, c, W0.dtype) if self.nx is not None else None
        self.decay = 1.0 - 2.0 * c.eta * c.lam  # gradient of λ||w||² is 2λw
        self.b_start = math.sqrt(2.0 * math.log(c.d) / c.d) * c.bias_init_factor  # footnote 3

    # -- the loop ------------------------------------------------------------------------------------------------
    def loop(self, show: bool, checkpoint_path: Any, every: int) -> None:
        c = self.c
        bar = _progress_bar(show, c.steps, self.step)
        t_start = time.perf_counter()
        seconds_before = self.seconds
        try:
            with _quiet_floats():
                while self.step < c.steps:
                    t = self.step
                    if c.bias == "schedule" and t == c.t1:
                        self.b = self.b_start * self.norms
                    stats = self._stats() if t % c.eval_every == 0 else None  # of W(t), before the update
                    loss, active = self._update(t)
                    if stats is not None:
                        self._record(t, loss, active, seconds_before + time.perf_counter() - t_start, stats)
                    else:
                        self.window[0] += loss
                        self.window[1] += 1
                    self.step = t + 1
                    if bar is not None:
                        bar.update(1)
                    if checkpoint_path is not None and self.step % every == 0:
                        self.seconds = seconds_before + time.perf_counter() - t_start
                        self.save_checkpoint(checkpoint_path)
                # The last row: the loss of the final weights on one more fresh batch (no update).
                if c.bias == "schedule" and c.steps == c.t1:
                    self.b = self.b_start * self.norms
                loss, _, active = self._loss_and_grad(c.steps, scale=0.0)
                self._record(c.steps, loss, active, seconds_before + time.perf_counter() - t_start, self._stats())
        finally:
            if bar is not None:
                bar.close()
        self.seconds = seconds_before + time.perf_counter() - t_start

    def _loss_and_grad(self, t: int, scale: float) -> tuple[float, Any, float]:
        c = self.c
        batch = self.source.draw()
        b = None if self._b_is_zero(t) else self.b
        if c.augment == "supervised":
            if self.nx is not None:
                loss, GW, GV, active = _supervised_step(self.nx, self.W, b, self.V, batch.X, batch.Z, scale, self.ws)
            else:
                loss, GW, GV, active = _supervised_step_generic(self.W, self.b, self.V, batch.X, batch.Z, scale)
            self._GV = GV
        else:
            paired = c.augment == "mask"
            if self.nx is not None:
                loss, GW, active = _contrastive_step(self.nx, self.W, b, batch.X, c.batch, paired, c.tau,
                                                     c.include_positive, scale, self.ws)
            else:
                loss, GW, active = _contrastive_step_generic(self.W, self.b, batch.X, c.batch, paired, c.tau,
                                                             c.include_positive, scale)
        if not math.isfinite(loss):
            raise TrainingDiverged(_diverged_message(c, t, "loss", loss))
        return loss, GW, active

    def _b_is_zero(self, t: int) -> bool:
        return self.c.bias == "none" or t < self.c.t1

    def _update(self, t: int) -> tuple[float, float]:
        """One SGD step: W ← (1 − 2ηλ) W − η ∇L, then the bias schedule."""
        c = self.c
        loss, GW, active = self._loss_and_grad(t, scale=-c.eta)
        if self.nx is not None:
            self.W *= self.W.dtype.type(self.decay)
            self.W += GW
            if self.V is not None:
                self.V += self._GV
        else:
            self.W = self.W * self.decay + GW
            if self.V is not None:
                self.V = self.V + self._GV
        norms = _row_norms(self.xp, self.W)
        total = float(self.xp.sum(norms))
        if not math.isfinite(total):
            raise TrainingDiverged(_diverged_message(c, t, "the weights W (a row norm ||w_i||)", total))
        if self.V is not None and not math.isfinite(float(self.xp.sum(self.V * self.V))):
            raise TrainingDiverged(_diverged_message(c, t, "the supervised head V", float("nan")))
        if c.bias == "schedule" and t >= c.t1:
            self.b = _grow_bias(self.xp, self.b, self.norms, norms, c.bias_growth_min, c.bias_cap_factor)
        self.norms = norms
        return loss, active

    # -- history -------------------------------------------------------------------------------------------------
    def _stats(self) -> dict[str, float]:
        """Cheap summaries of the current ``(W, b)`` for a history row."""
        xp, c = self.xp, self.c
        norms = self.norms
        alpha = self.W @ self.model.M
        a2 = alpha * alpha
        n2 = xp.maximum(norms * norms, xp.asarray(1e-30, dtype=norms.dtype))
        stats = {
            "decay_term": c.lam * float(xp.sum(norms * norms)),
            "w_norm_mean": float(xp.mean(norms)),
            "w_norm_max": float(xp.max(norms)),
            "b_mean": float(xp.mean(self.b)),
            "b_rel_mean": float(xp.mean(self.b / xp.sqrt(n2))),
            "span_energy": float(xp.mean(xp.sum(a2, axis=1) / n2)),
            "top_atom_share": float(xp.mean(xp.max(a2, axis=1) / n2)),
        }
        if self.V is not None:
            stats["head_norm"] = float(xp.sqrt(xp.sum(self.V * self.V)))
        return stats

    def _record(self, step: int, loss: float, active: float, seconds: float, stats: dict[str, float]) -> None:
        self.window[0] += loss
        self.window[1] += 1
        decay = stats.pop("decay_term")
        row = {"step": int(step), "loss": float(loss), "loss_window": self.window[0] / self.window[1],
               "objective": float(loss) + decay, **stats, "active_frac": float(active), "seconds": float(seconds)}
        self.history.append(row)
        self.window = [0.0, 0]

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def save_checkpoint(self, path: Any) -> None:
        arrays = {
            "format": np.array(_CHECKPOINT_FORMAT),
            "config": np.array(self.c.to_json()),
            "M": to_numpy(self.model.M),
            "W": to_numpy(self.W),
            "b": to_numpy(self.b),
            "step": np.array(self.step, dtype=np.int64),
            "history": np.array(json.dumps(self.history, allow_nan=False)),
            "window": np.array(self.window, dtype=np.float64),
            "seconds": np.array(self.seconds),
            "rng_state": np.array(json.dumps(self.source.get_state())),
        }
        if self.V is not None:
            arrays["head"] = to_numpy(self.V)
        atomic_savez(path, arrays)

    def restore(self, path: Any) -> None:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != _CHECKPOINT_FORMAT:
                raise ValueError(f"checkpoint {os.fspath(path)!r} has format {int(data['format'])}; "
                                 f"this fdcheck reads format {_CHECKPOINT_FORMAT}")
            saved = json.loads(str(data["config"]))
            mine = self.c.to_dict()
            differ = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
            if differ:
                raise ValueError(f"checkpoint {os.fspath(path)!r} was written for another configuration "
                                 f"(differs in: {', '.join(differ)}); delete it or use another checkpoint_path")
            if not np.array_equal(data["M"], to_numpy(self.model.M)):
                raise ValueError(f"checkpoint {os.fspath(path)!r} was written for another dictionary M")
            self.W = self.xp.asarray(data["W"].copy())
            self.b = self.xp.asarray(data["b"].copy())
            if self.V is not None:
                self.V = self.xp.asarray(data["head"].copy())
            self.step = int(data["step"])
            self.history = json.loads(str(data["history"]))
            self.window = [float(data["window"][0]), int(data["window"][1])]
            self.seconds = float(data["seconds"])
            self.source.set_state(json.loads(str(data["rng_state"])))
        self.norms = _row_norms(self.xp, self.W)

    def close(self) -> None:
        self.source.close()


def _grow_bias(xp: Any, b: Any, old_norms: Any, new_norms: Any, growth_min: float, cap: float) -> Any:
    """Footnote 3: ``b ← min(b (1 + max(growth_min, ||w(t+1)||/||w(t)|| − 1)), cap ||w(t+1)||)``."""
    tiny = xp.asarray(1e-30, dtype=old_norms.dtype)
    rate = xp.maximum(new_norms / xp.maximum(old_norms, tiny) - 1, xp.asarray(growth_min, dtype=b.dtype))
    return xp.minimum(b * (1 + rate), cap * new_norms)


def _diverged_message(c: ModelConfig, t: int, quantity: str, value: float) -> str:
    return (f"training diverged at step {t} of {c.steps}: {quantity} is {value!r} (not finite). "
            f"Likely remedy: lower the learning rate eta (now {c.eta:g}; try eta={c.eta / 10:g}); "
            f"a larger tau (now {c.tau:g}) or a smaller init_std (now {c.init_std:g}) also tames the similarities.")


def _progress_bar(show: bool, total: int, initial: int) -> Any:
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", file=sys.stderr, mininterval=0.5,
                dynamic_ncols=True)


class _quiet_floats:
    """Silence NumPy's overflow/invalid warnings in the hot loop: non-finite values are detected explicitly."""

    def __enter__(self) -> None:
        self._old = np.seterr(over="ignore", invalid="ignore", divide="ignore", under="ignore")

    def __exit__(self, *exc: Any) -> None:
        np.seterr(**self._old)


# ----------------------------------------------------------------------------------------------------------------
# Random batches: the step's fresh positives (and their views) and negatives.


@dataclass
class _Batch:
    """One step's inputs: ``X`` stacks the rows that go through ``W`` (see :func:`_contrastive_step`)."""

    X: Any
    Z: Any  # sparse codes of the positives (supervised labels) or None


def _make_source(c: ModelConfig, model: SparseCodingModel, rng: Random, threads: int) -> Any:
    streams = rng.spawn(NOISE_STREAMS)
    if isinstance(model.M, np.ndarray):
        return _NumpySource(c, model, streams, threads)
    return _GenericSource(c, model, streams)


class _NumpySource:
    """Draws a step's batch on NumPy into preallocated buffers, ``NOISE_STREAMS`` streams in parallel threads.

    Row layout of ``X`` (``n = batch``, ``k = negatives``): mask ``[x⁺ (n); x⁺⁺ (n); negatives (k)]``, none
    ``[x (n); negatives (k)]``, supervised ``[x (n)]``. Stream ``s`` owns the sample rows ``[r_s, r_{s+1})`` of
    the positives-then-negatives block and draws, in this order, their Gaussian noise, their codes ``z`` and (for
    positive rows) their RandomMask bits.
    """

    def __init__(self, c: ModelConfig, model: SparseCodingModel, streams: list[Random], threads: int) -> None:
        self.c = c
        self.gens = [np.random.Generator(np.random.PCG64(s.seed)) for s in streams]
        self.dtype = model.M.dtype
        n, k, d1, d = c.batch, c.negatives, c.d1, c.d
        self.n = n
        self.contrastive = c.augment != "supervised"
        self.paired = c.augment == "mask"
        self.samples = n + k if self.contrastive else n
        offset = n if self.paired else 0  # rows of X before the sample block
        self.X = np.empty((offset + self.samples, d1), dtype=self.dtype)
        self.S = self.X[offset:]  # the samples x = M z + ξ (positives then negatives)
        self.Z = np.empty((self.samples, d), dtype=self.dtype)
        self.XI = np.empty((self.samples, d1), dtype=self.dtype)
        self.D = np.empty((n, d1), dtype=self.dtype) if self.paired else None
        self.MT = np.ascontiguousarray(model.M.T)
        self.sigma = math.sqrt(c.noise_variance)
        self.bounds = [s * self.samples // NOISE_STREAMS for s in range(NOISE_STREAMS + 1)]
        # Box–Muller scratch: an even number of uniforms covering each stream's rows
        self.ubufs = [np.empty((self.bounds[s + 1] - self.bounds[s]) * d1 + 1, dtype=self.dtype)
                      for s in range(NOISE_STREAMS)]
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    def _fill(self, s: int) -> None:
        r0, r1 = self.bounds[s], self.bounds[s + 1]
        if r1 == r0:
            return
        g = self.gens[s]
        _box_muller(g, self.XI[r0:r1].reshape(-1), self.ubufs[s], self.sigma)
        # Definition 2.1: z_j = ±1 with probability p/2 each (the same rule as SparseCodingModel.sample_z).
        u = g.random((r1 - r0, self.c.d), dtype=self.dtype)
        half = self.c.p / 2
        np.subtract(u > 1 - half, u < half, out=self.Z[r0:r1], dtype=self.dtype)
        if self.paired and r0 < self.n:
            rows = min(r1, self.n) - r0
            _mask_bits(g, self.D[r0:r0 + rows], self.c.keep_prob)

    def draw(self) -> _Batch:
        if self.pool is None:
            for s in range(NOISE_STREAMS):
                self._fill(s)
        else:
            for f in [self.pool.submit(self._fill, s) for s in range(NOISE_STREAMS)]:
                f.result()
        np.matmul(self.Z, self.MT, out=self.S)  # Definition 2.1: x = M z + ξ
        self.S += self.XI
        if self.paired:
            # Definition 2.3 exactly as augment.random_mask: x⁺ = D x / q, x⁺⁺ = (x − D x) / (1 − q).
            q = self.c.keep_prob
            n = self.n
            x = self.S[:n]  # = X[n:2n]
            kept = self.X[:n]
            np.multiply(x, self.D, out=kept)
            np.subtract(x, kept, out=x)
            x *= self.dtype.type(1.0 / (1.0 - q))
            kept *= self.dtype.type(1.0 / q)
        return _Batch(X=self.X, Z=self.Z[: self.n])

    def get_state(self) -> list[dict[str, Any]]:
        return [g.bit_generator.state for g in self.gens]

    def set_state(self, states: list[dict[str, Any]]) -> None:
        if len(states) != len(self.gens):
            raise ValueError(f"checkpoint holds {len(states)} random streams; expected {len(self.gens)}")
        for g, st in zip(self.gens, states):
            g.bit_generator.state = st

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def _box_muller(g: np.random.Generator, out: np.ndarray, u: np.ndarray, sigma: float) -> None:
    """Fill ``out`` with ``N(0, sigma²)`` draws: the Box–Muller transform of uniforms from ``g`` (``u`` is scratch).

    ``r = √(−2 log(1 − u₁))``, ``θ = 2π u₂``; ``r cos θ`` and ``r sin θ`` are independent standard normals.
    Float32 uniforms are multiples of 2⁻²⁴, so ``|draw| ≤ 5.77 σ`` (a Gaussian exceeds that with probability
    8·10⁻⁹); everything else is the exact Gaussian up to float32 rounding.
    """
    n = out.size
    pairs = (n + 1) // 2
    u = u[: 2 * pairs]
    g.random(out=u, dtype=u.dtype)
    r, theta = u[:pairs], u[pairs:]
    np.subtract(1, r, out=r)  # (0, 1]: the log is finite
    np.log(r, out=r)
    r *= u.dtype.type(-2.0 * sigma * sigma)
    np.sqrt(r, out=r)
    theta *= u.dtype.type(2.0 * math.pi)
    rest = n - pairs
    np.cos(theta, out=out[:pairs])
    out[:pairs] *= r
    np.sin(theta[:rest], out=out[pairs:])
    out[pairs:] *= r[:rest]


def _mask_bits(g: np.random.Generator, out: np.ndarray, keep_prob: float) -> None:
    """RandomMask's diagonals (Definition 2.3): i.i.d. Bernoulli(``keep_prob``) as 0/1 floats into ``out``.

    At ``keep_prob = 1/2`` each bit of a random byte string is one fair coin (16 times cheaper than a uniform).
    """
    if keep_prob == 0.5:
        bits = np.unpackbits(np.frombuffer(g.bytes((out.size + 7) // 8), dtype=np.uint8), count=out.size)
        np.copyto(out.reshape(-1), bits, casting="unsafe")
    else:
        np.less(g.random(out.shape, dtype=out.dtype), keep_prob, out=out, casting="unsafe")


class _GenericSource:
    """Batches for backends other than NumPy, drawn with the library's own samplers (allocating; CuPy, strict)."""

    def __init__(self, c: ModelConfig, model: SparseCodingModel, streams: list[Random]) -> None:
        self.c, self.model, self.rng = c, model, streams[0]

    def draw(self) -> _Batch:
        from .augment import random_mask

        c = self.c
        xp = array_namespace(self.model.M)
        pos = self.model.sample(c.batch, self.rng)
        if c.augment == "supervised":
            return _Batch(X=pos.x, Z=pos.z)
        neg = self.model.sample(c.negatives, self.rng).x
        if c.augment == "mask":
            x1, x2 = random_mask(pos.x, self.rng, c.keep_prob)
            return _Batch(X=xp.concat([x1, x2, neg], axis=0), Z=pos.z)
        return _Batch(X=xp.concat([pos.x, neg], axis=0), Z=pos.z)

    def get_state(self) -> list[dict[str, Any]]:  # pragma: no cover - refused earlier in train()
        raise ValueError("the random state of this backend cannot be saved")

    def set_state(self, states: list[dict[str, Any]]) -> None:  # pragma: no cover
        raise ValueError("the random state of this backend cannot be restored")

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------------------------
# The fused steps (NumPy and CuPy: the native module ``nx`` with ``out=`` buffers) and their array-API twins.


class _Workspace:
    """Preallocated buffers of the fused step for one configuration."""

    def __init__(self, nx: Any, c: ModelConfig, dtype: Any) -> None:
        n, k = c.batch, c.negatives
        rows = {"mask": 2 * n + k, "none": n + k, "supervised": n}[c.augment]
        self.U = nx.empty((rows, c.m), dtype=dtype)
        self.F = nx.empty((rows, c.m), dtype=dtype)
        self.GW = nx.empty((c.m, c.d1), dtype=dtype)


def _contrastive_step(nx: Any, W: Any, b: Any, X: Any, n: int, paired: bool, tau: float, include_positive: bool,
                      scale: float, ws: _Workspace | None = None) -> tuple[float, Any, float]:
    """The loss (2.2) and ``scale · dL/dW`` in one pass: the same quantity as ``loss.contrastive_loss_and_grad``.

    Args:
        nx: the arrays' native module (``numpy`` or ``cupy``).
        W: ``(m, d1)`` weights.
        b: ``(m,)`` non-negative biases, or ``None`` for ``b = 0`` (skips the threshold).
        X: rows ``[x1 (n); x2 (n); negatives (k)]`` if ``paired`` else ``[x (n); negatives (k)]`` (then
            ``x2 = x1 = x``: one product serves both views).
        n: number of positives.
        paired: whether ``X`` holds two views.
        tau: temperature.
        include_positive: whether the positive is in the denominator set (see :mod:`fdcheck.loss`).
        scale: factor applied to the gradient (``−η`` in training, so the caller only adds it).
        ws: buffers (allocated when ``None``).

    Returns:
        ``(loss, scale · dL/dW, share of non-zero features among the first views)``; the gradient lives in ``ws``.
    """
    if ws is None:
        ws = _ad_hoc_workspace(nx, W, X)
    U = ws.U[: X.shape[0]]
    nx.matmul(X, W.T, out=U)  # every view and negative through W at once
    F = _soft_threshold(nx, U, b, ws.F[: X.shape[0]])
    F1 = F[:n]
    F2 = F[n: 2 * n] if paired else F1
    Fn = F[2 * n:] if paired else F[n:]
    s_pos = nx.einsum("ij,ij->i", F1, F2)
    s_neg = F1 @ Fn.T
    inv_tau = 1.0 / tau
    # log-sum-exp with the row maximum taken out, as loss.softmax_weights does
    top = nx.max(s_neg, axis=1)
    if include_positive:
        nx.maximum(top, s_pos, out=top)
    E = s_neg - top[:, None]
    E *= E.dtype.type(inv_tau)
    nx.exp(E, out=E)
    total = nx.sum(E, axis=1)
    if include_positive:
        e_pos = nx.exp((s_pos - top) * inv_tau)
        total += e_pos
    loss = float(nx.mean(top + tau * nx.log(total) - s_pos))
    E /= total[:, None]
    # dL/df1_i = Σ_{x ∈ B_i} softmax weight · f(x) − f(x2_i); the positive's weight multiplies f(x2_i).
    G = E @ Fn
    coef = (e_pos / total - 1) if include_positive else nx.full((n,), -1.0, dtype=G.dtype)
    G += coef[:, None] * F2
    G *= _derivative(nx, U[:n], b)
    G *= G.dtype.type(scale / n)
    nx.matmul(G.T, X[:n], out=ws.GW)
    active = float(nx.count_nonzero(F1)) / F1.size
    return loss, ws.GW, active


def _supervised_step(nx: Any, W: Any, b: Any, V: Any, X: Any, Z: Any, scale: float, ws: _Workspace | None = None
                     ) -> tuple[float, Any, Any, float]:
    """Squared loss ``mean_i ||V f(x_i) − z_i||²`` and ``scale ·`` its gradients with respect to ``W`` and ``V``.

    Returns:
        ``(loss, scale · dL/dW, scale · dL/dV, share of non-zero features)``.
    """
    if ws is None:
        ws = _ad_hoc_workspace(nx, W, X)
    n = X.shape[0]
    U = ws.U[:n]
    nx.matmul(X, W.T, out=U)
    F = _soft_threshold(nx, U, b, ws.F[:n])
    R = F @ V.T
    R -= Z
    loss = float(nx.sum(R * R)) / n
    R *= R.dtype.type(2.0 * scale / n)
    GV = R.T @ F
    G = R @ V
    G *= _derivative(nx, U, b)
    nx.matmul(G.T, X, out=ws.GW)
    return loss, ws.GW, GV, float(nx.count_nonzero(F)) / F.size


def _soft_threshold(nx: Any, U: Any, b: Any, out: Any) -> Any:
    """``h(u) = u − clip(u, −b, b)`` = ``network.activation(u, b)`` for ``b ≥ 0``; ``U`` itself when ``b`` is 0."""
    if b is None:
        return U
    # clip(u, −b, b) as max then min: the same values, and several times faster than clip with array bounds
    nx.maximum(U, -b, out=out)
    nx.minimum(out, b, out=out)
    nx.subtract(U, out, out=out)
    return out


def _derivative(nx: Any, U: Any, b: Any) -> Any:
    """``h'(u) = 1{|u| > b}`` (= ``network.activation_derivative`` for ``b ≥ 0``)."""
    a = nx.abs(U)
    return a > (0 if b is None else b)


def _ad_hoc_workspace(nx: Any, W: Any, X: Any) -> _Workspace:
    ws = _Workspace.__new__(_Workspace)
    ws.U = nx.empty((X.shape[0], W.shape[0]), dtype=W.dtype)
    ws.F = nx.empty_like(ws.U)
    ws.GW = nx.empty_like(W)
    return ws


def _contrastive_step_generic(W: Any, b: Any, X: Any, n: int, paired: bool, tau: float, include_positive: bool,
                              scale: float) -> tuple[float, Any, float]:
    """:func:`_contrastive_step` for any array-API namespace, through ``loss.contrastive_loss_and_grad``."""
    from .loss import contrastive_loss_and_grad
    from .network import features

    xp = array_namespace(W)
    x1 = X[:n, :]
    x2 = X[n: 2 * n, :] if paired else x1
    neg = X[2 * n:, :] if paired else X[n:, :]
    loss, grad = contrastive_loss_and_grad(W, b, x1, x2, neg, tau, include_positive)
    f1 = features(W, b, x1)
    active = float(xp.sum(xp.astype(f1 != 0, W.dtype))) / (f1.shape[0] * f1.shape[1])
    return float(loss), grad * scale, active


def _supervised_step_generic(W: Any, b: Any, V: Any, X: Any, Z: Any, scale: float) -> tuple[float, Any, Any, float]:
    """:func:`_supervised_step` for any array-API namespace."""
    from .network import activation, activation_derivative

    xp = array_namespace(W)
    n = X.shape[0]
    U = X @ W.T
    F = activation(U, b)
    R = F @ V.T - Z
    loss = float(xp.sum(R * R)) / n
    R = R * (2.0 * scale / n)
    G = (R @ V) * activation_derivative(U, b)
    active = float(xp.sum(xp.astype(F != 0, W.dtype))) / (F.shape[0] * F.shape[1])
    return loss, G.T @ X, R.T @ F, active


# ----------------------------------------------------------------------------------------------------------------
# Small helpers.


def _native_module(a: Any) -> Any:
    """``numpy`` or ``cupy`` when ``a`` is one of their arrays (the fused step needs ``out=``), else ``None``."""
    if isinstance(a, np.ndarray):
        return np
    if is_cupy_namespace(array_namespace(a)):
        import cupy

        return cupy
    return None


def _is_numpy(xp: Any) -> bool:
    return getattr(xp, "__name__", "") in ("numpy", "array_api_compat.numpy")


def _copy(xp: Any, a: Any) -> Any:
    return xp.asarray(a, copy=True)


def _row_norms(xp: Any, W: Any) -> Any:
    if isinstance(W, np.ndarray):
        return np.sqrt(np.einsum("ij,ij->i", W, W))
    return xp.sqrt(xp.sum(W * W, axis=1))


def _resolve_threads(threads: int | None) -> int:
    """``threads``, else ``$FDCHECK_THREADS``, else ``$OMP_NUM_THREADS`` (a sweep that pins BLAS to one thread per
    worker pins the noise too), else ``min(NOISE_STREAMS, cpu count)``; at most ``NOISE_STREAMS``."""
    if threads is None:
        env = os.environ.get("FDCHECK_THREADS", "")
        if env:
            try:
                threads = int(env)
            except ValueError:
                raise ValueError(f"FDCHECK_THREADS={env!r} must be an integer >= 1") from None
        else:
            omp = os.environ.get("OMP_NUM_THREADS", "")
            threads = int(omp) if omp.isdigit() and int(omp) >= 1 else min(NOISE_STREAMS, os.cpu_count() or 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads={threads!r} must be an integer >= 1")
    return min(threads, NOISE_STREAMS)


_BLAS_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def blas_thread_limit() -> Any:
    """A context that runs BLAS on one thread, unless the environment sets its thread count explicitly.

    The products here are small (``m ≤ 512`` rows); on a shared 2-core machine two OpenBLAS threads made a step
    10–25× *slower* (busy-waiting threads competing with other processes), and one thread per process is what a
    sweep runs anyway. Set ``OMP_NUM_THREADS`` (or ``OPENBLAS_NUM_THREADS``) to choose otherwise.
    """
    if any(os.environ.get(name) for name in _BLAS_ENV):
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; without it BLAS keeps its own default
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")

