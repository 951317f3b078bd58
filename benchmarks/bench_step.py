"""Time one training step: fdcheck's fused step, the same step as a PyTorch user writes it, and the floor.

    .venv/bin/python benchmarks/bench_step.py                # d = 32, 64, 128, one thread, float32, CPU
    .venv/bin/python benchmarks/bench_step.py --threads 2 --d 64

All three run in this one process on ``ModelConfig.scaled(d)`` with RandomMask and the bias schedule active
(``batch`` positives, two views each, ``negatives`` negatives, all fresh every step):

(a) fdcheck: one iteration of :func:`fdcheck.train.train`'s loop (draw the batch, fused loss and gradient,
    weight decay, SGD update, bias schedule, divergence check).
(b) PyTorch: the same step written the way a PyTorch user would (``torch.randn``/``torch.rand`` for the data,
    autograd, ``.detach()`` for the stop-gradient, ``logsumexp``, weight decay in the loss, an in-place update under
    ``no_grad``). Skipped when torch is not installed (``pip install torch``, the optional ``bench`` extra).
(c) floor: the step's fresh random numbers (drawn as fdcheck draws them) plus the step's matrix products, alone.

Each figure is the minimum over ``--repeats`` interleaved rounds of the mean over ``--steps`` steps (the machine is
shared, the minimum is the least disturbed round). The script also reports the peak memory of a ``d = 64``
training run (a child process, so that torch and this script do not count): ``ru_maxrss`` and tracemalloc's peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d", default="32,64,128", help="comma-separated d values (default 32,64,128)")
    p.add_argument("--threads", type=int, default=1, help="BLAS / torch / noise threads (default 1)")
    p.add_argument("--steps", type=int, default=30, help="steps per timing round (default 30)")
    p.add_argument("--repeats", type=int, default=7, help="interleaved rounds; the minimum is reported (default 7)")
    p.add_argument("--memory-steps", type=int, default=300, help="steps of the d=64 memory run (default 300)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    return p.parse_args(argv)


ARGS = _parse(None if __name__ == "__main__" else [])
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)  # before NumPy (and its BLAS) is imported

import numpy as np  # noqa: E402

from fdcheck.config import ModelConfig  # noqa: E402
from fdcheck.network import init_weights  # noqa: E402
from fdcheck.train import _make_source, _Run, make_model  # noqa: E402

try:
    import torch
except ImportError:  # the optional `bench` extra
    torch = None


def config_for(d: int) -> ModelConfig:
    return ModelConfig.scaled(d, t1=0)  # bias schedule active from the first step, as in most of a run


def fdcheck_stepper(c: ModelConfig, threads: int):
    model, rngs = make_model(c)
    W0, _ = init_weights(c.m, c.d1, c.init_std, rngs["init"], c.dtype)
    run = _Run(c, model, W0, rngs["train"], threads)
    run.b = run.b_start * run.norms
    state = {"t": 1}

    def step() -> None:
        run._update(state["t"])
        state["t"] += 1

    return step, run.close


def floor_stepper(c: ModelConfig, threads: int):
    """The step's random draws (as fdcheck draws them) and its matrix products, nothing else."""
    model, rngs = make_model(c)
    W, _ = init_weights(c.m, c.d1, c.init_std, rngs["init"], c.dtype)
    src = _make_source(c, model, rngs["train"], threads)
    n, k = c.batch, c.negatives
    X = src.X
    U = np.empty((X.shape[0], c.m), np.float32)
    S = np.empty((n, k), np.float32)
    G = np.empty((n, c.m), np.float32)
    GW = np.empty_like(W)
    src.draw()  # real data in every row of X once (the floor itself applies no mask)

    def step() -> None:
        if src.pool is None:
            for s in range(len(src.gens)):
                src._fill(s)
        else:
            for f in [src.pool.submit(src._fill, s) for s in range(len(src.gens))]:
                f.result()
        np.matmul(src.Z, src.MT, out=src.S)  # x = M z (+ ξ)
        np.matmul(X, W.T, out=U)  # all views and negatives through W
        np.matmul(U[:n], U[2 * n:].T, out=S)  # similarities to the negatives
        np.matmul(S, U[2 * n:], out=G)  # softmax-weighted negatives
        np.matmul(G.T, X[:n], out=GW)  # the gradient

    return step, src.close


def torch_stepper(c: ModelConfig, threads: int):
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(c.seed)
    M = torch.linalg.qr(torch.randn(c.d1, c.d, generator=gen, dtype=torch.float64))[0].float()
    W = (torch.randn(c.m, c.d1, generator=gen) * c.init_std).requires_grad_()
    with torch.no_grad():
        b = 0.6 * (2 * np.log(c.d) / c.d) ** 0.5 * W.norm(dim=1)
    n, k, tau, sigma, p = c.batch, c.negatives, c.tau, c.noise_variance ** 0.5, c.p

    def sample(count: int) -> torch.Tensor:
        u = torch.rand(count, c.d, generator=gen)
        z = (u > 1 - p / 2).float() - (u < p / 2).float()
        return z @ M.T + sigma * torch.randn(count, c.d1, generator=gen)

    def f(x: torch.Tensor) -> torch.Tensor:
        u = x @ W.T
        return torch.relu(u - b) - torch.relu(-u - b)

    def step() -> None:
        nonlocal b
        x, neg = sample(n), sample(k)
        mask = torch.bernoulli(torch.full((n, c.d1), c.keep_prob), generator=gen)
        x1, x2 = 2 * mask * x, 2 * (1 - mask) * x
        f1, f2, fn = f(x1), f(x2).detach(), f(neg).detach()
        pos = (f1 * f2).sum(dim=1)
        logits = torch.cat([pos[:, None], f1 @ fn.T], dim=1) / tau
        loss = (-pos + tau * torch.logsumexp(logits, dim=1)).mean() + c.lam * (W ** 2).sum()
        loss.backward()
        with torch.no_grad():
            old = W.norm(dim=1)
            W.sub_(c.eta * W.grad)
            W.grad = None
            new = W.norm(dim=1)
            b = torch.minimum(b * (1 + torch.clamp(new / old - 1, min=c.bias_growth_min)), c.bias_cap_factor * new)
        if not torch.isfinite(loss):
            raise RuntimeError("diverged")

    return step, lambda: None


def time_all(steppers: dict, steps: int, repeats: int) -> dict[str, float]:
    """Interleaved rounds; per stepper the minimum over rounds of the mean seconds per step."""
    for step, _ in steppers.values():  # warm-up
        for _ in range(3):
            step()
    best = {name: float("inf") for name in steppers}
    for _ in range(repeats):
        for name, (step, _) in steppers.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            best[name] = min(best[name], (time.perf_counter() - t0) / steps)
    for _, close in steppers.values():
        close()
    return best


MEMORY_CHILD = r"""
import json, resource, sys, tracemalloc
from fdcheck.config import ModelConfig
from fdcheck.train import train
tracemalloc.start()
r = train(ModelConfig.scaled(64, steps=int(sys.argv[1])), progress=False, threads=int(sys.argv[2]))
peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "tracemalloc_peak_mib": peak / 2**20}))
"""


def peak_memory(steps: int, threads: int) -> dict[str, float]:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(steps), str(threads)], capture_output=True,
                         text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ds = [int(v) for v in ARGS.d.split(",")]
    print(f"one training step, float32, CPU, {ARGS.threads} thread(s); min over {ARGS.repeats} rounds of "
          f"{ARGS.steps} steps; numpy {np.__version__}" + (f", torch {torch.__version__}" if torch else ", no torch"))
    header = f"{'d':>4} {'d1':>5} {'m':>4} | {'fdcheck':>9} {'pytorch':>9} {'floor':>9} | {'torch/fd':>8} {'fd/floor':>8}"
    print(header)
    print("-" * len(header))
    rows = []
    for d in ds:
        c = config_for(d)
        steppers = {"fdcheck": fdcheck_stepper(c, ARGS.threads), "floor": floor_stepper(c, ARGS.threads)}
        if torch is not None:
            steppers["pytorch"] = torch_stepper(c, ARGS.threads)
        t = time_all(steppers, ARGS.steps, ARGS.repeats)
        ms = {k: 1e3 * v for k, v in t.items()}
        row = {"d": d, "d1": c.d1, "m": c.m, "batch": c.batch, "negatives": c.negatives, "threads": ARGS.threads,
               "fdcheck_ms": ms["fdcheck"], "floor_ms": ms["floor"], "pytorch_ms": ms.get("pytorch"),
               "fdcheck_over_floor": ms["fdcheck"] / ms["floor"],
               "pytorch_over_fdcheck": ms["pytorch"] / ms["fdcheck"] if "pytorch" in ms else None}
        rows.append(row)
        tp = f"{ms['pytorch']:9.3f}" if "pytorch" in ms else f"{'-':>9}"
        rt = f"{row['pytorch_over_fdcheck']:8.2f}" if "pytorch" in ms else f"{'-':>8}"
        print(f"{d:>4} {c.d1:>5} {c.m:>4} | {ms['fdcheck']:9.3f} {tp} {ms['floor']:9.3f} | {rt} "
              f"{row['fdcheck_over_floor']:8.2f}   (ms/step)")
    mem = peak_memory(ARGS.memory_steps, ARGS.threads)
    print(f"peak memory of a d=64 training run ({ARGS.memory_steps} steps, child process): "
          f"ru_maxrss {mem['maxrss_mib']:.0f} MiB, tracemalloc peak {mem['tracemalloc_peak_mib']:.1f} MiB "
          f"(limit 1024 MiB)")
    if ARGS.json:
        with open(ARGS.json, "w") as fh:
            json.dump({"rows": rows, "memory": mem, "threads": ARGS.threads}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
