"""Mutation check of the core: inject one deliberate bug at a time into a temporary copy and run the suite.

Each mutation below is a textual change to one core file. For each, the repository (without ``.git`` and the
virtual environment) is copied to a temporary directory, the change is applied there (the working tree is never
touched), and the core-model tests run against the copy (``PYTHONPATH`` puts the copy's ``fdcheck`` first; the
script checks that it is the one imported). A mutation is *caught* when at least one test fails; the failing
tests are listed. Tests run with the ``ci`` Hypothesis profile, so the result is the same on every run.

Usage (from the repository root)::

    .venv/bin/python properties/mutate.py                 # every mutation, a table on stdout
    .venv/bin/python properties/mutate.py --only noise_std_is_variance --show-output

Exit status: 0 when every mutation is caught, 1 otherwise. ``properties/MUTATIONS.md`` records a run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["properties/test_strategies.py", "properties/test_data_model.py", "properties/test_network_loss.py",
         "properties/test_augment.py", "properties/test_backends.py", "tests/test_config.py", "tests/test_backend.py",
         "tests/test_core_golden.py"]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    description: str
    count: int = 1  # how many occurrences of `old` the change replaces (all of them must exist)


_NO_STOP_GRADIENT = """    loss, grad_f1 = contrastive_loss_from_features(f1, f2, f_neg, tau, include_positive)
    xp = array_namespace(W)
    n = f1.shape[0]
    s_pos, s_neg = xp.sum(f1 * f2, axis=1), f1 @ f_neg.T
    logits = (xp.concat([s_pos[:, None], s_neg], axis=1) if include_positive else s_neg) / tau
    _, weights = softmax_weights(logits)
    grad_f2 = (weights[:, :1] * f1 - f1) / n if include_positive else -f1 / n
    grad_neg = weights[:, -f_neg.shape[0]:].T @ f1 / n
    grad = (grad_f1 * activation_derivative(u1, b)).T @ x1
    grad = grad + (grad_f2 * activation_derivative(x2 @ W.T, b)).T @ x2
    return loss, grad + (grad_neg * activation_derivative(x_neg @ W.T, b)).T @ x_neg
"""

MUTATIONS = [
    Mutation("gradient_through_stop_gradient", "fdcheck/loss.py",
             "    loss, grad_f1 = contrastive_loss_from_features(f1, f2, f_neg, tau, include_positive)\n"
             "    return loss, (grad_f1 * activation_derivative(u1, b)).T @ x1\n",
             _NO_STOP_GRADIENT,
             "the gradient also flows through the stopped branch f(x2), f(x_neg) (the exact gradient without "
             "StopGrad)"),
    Mutation("mask_not_complementary", "fdcheck/augment.py",
             "return kept * (1.0 / keep_prob), (x - kept) * (1.0 / (1.0 - keep_prob))",
             "return kept * (1.0 / keep_prob), x * rng.bernoulli(tuple(x.shape), 1.0 - keep_prob, dtype=dtype) "
             "* (1.0 / (1.0 - keep_prob))",
             "x++ uses an independent mask instead of I − D"),
    Mutation("activation_wrong_sign", "fdcheck/network.py",
             "return xp.maximum(u - b, 0) - xp.maximum(-u - b, 0)",
             "return xp.maximum(u - b, 0) + xp.maximum(-u - b, 0)",
             "h(u) = ReLU(u − b) + ReLU(−u − b) (even instead of odd)"),
    Mutation("positive_dropped_from_denominator", "fdcheck/loss.py",
             "    if include_positive:\n", "    if include_positive and False:\n",
             "B = negatives only even when include_positive=True (loss and gradient consistently)", count=2),
    Mutation("noise_std_is_variance", "fdcheck/data.py",
             "std=math.sqrt(self.noise_variance)", "std=self.noise_variance",
             "noise drawn with standard deviation sigma2 instead of sqrt(sigma2)"),
    Mutation("derivative_sign_on_negative_side", "fdcheck/network.py",
             "+ xp.astype(u < -b, u.dtype)", "- xp.astype(u < -b, u.dtype)",
             "h'(u) = −1 for u < −b"),
    Mutation("views_not_rescaled", "fdcheck/augment.py",
             "return kept * (1.0 / keep_prob), (x - kept) * (1.0 / (1.0 - keep_prob))",
             "return kept, x - kept",
             "x+ = Dx, x++ = (I − D)x (the factor 2 of Definition 2.3 forgotten)"),
    Mutation("code_rate_asymmetric", "fdcheck/data.py",
             "- xp.astype(u < half, self.M.dtype)", "- xp.astype(u < half / 2, self.M.dtype)",
             "z_j = −1 with probability p/4 instead of p/2"),
    Mutation("dictionary_not_orthonormal", "fdcheck/data.py",
             "return xp.astype(q * signs[None, :], getattr(xp, dtype))",
             "return xp.astype(g / d1**0.5, getattr(xp, dtype))",
             "M = G/√d1 (Gaussian, only approximately orthonormal) instead of the Q factor"),
    Mutation("temperature_dropped", "fdcheck/loss.py",
             "loss = xp.mean(-s_pos + tau * lse)", "loss = xp.mean(-s_pos + lse)",
             "L = −Sim⁺ + log Σ exp(Sim/τ) (τ missing in front of the log)"),
    Mutation("gradient_not_averaged", "fdcheck/loss.py",
             "return loss, grad / n", "return loss, grad",
             "dL/df1 summed over positives while the loss is their mean"),
    Mutation("log_sum_exp_unshifted", "fdcheck/loss.py",
             "top = xp.max(logits, axis=1, keepdims=True)", "top = 0 * xp.max(logits, axis=1, keepdims=True)",
             "log-sum-exp without the max shift (overflows at large similarities)"),
]


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".hypothesis", ".pytest_cache", "*.egg-info",
                                    "runs", "reports", ".fdcheck-store", "*.npz")
    for name in ("fdcheck", "properties", "tests"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", dest / "pyproject.toml")


def _apply(dest: Path, mutation: Mutation) -> tuple[int, str]:
    path = dest / mutation.file
    text = path.read_text()
    found = text.count(mutation.old)
    if found != mutation.count:
        raise SystemExit(f"{mutation.name}: expected {mutation.count} occurrence(s) of the target in "
                         f"{mutation.file}, found {found}; the core changed, update the mutation")
    line = text[: text.index(mutation.old)].count("\n") + 1
    path.write_text(text.replace(mutation.old, mutation.new))
    return line, mutation.file


def run(mutation: Mutation | None, show_output: bool = False) -> tuple[list[str], float, int]:
    """Run the suite on a copy with ``mutation`` applied (None: unmutated); return (failing tests, seconds, line)."""
    with tempfile.TemporaryDirectory(prefix="fdcheck-mutant-") as tmp:
        dest = Path(tmp)
        _copy_tree(dest)
        line = 0
        if mutation is not None:
            line, _ = _apply(dest, mutation)
        env = {**os.environ, "PYTHONPATH": str(dest), "HYPOTHESIS_PROFILE": "ci", "OMP_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1"}
        where = subprocess.run([sys.executable, "-c", "import fdcheck; print(fdcheck.__file__)"], cwd=dest, env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
        if not where.startswith(str(dest)):
            raise SystemExit(f"the copy's fdcheck is not the one imported ({where}); cannot test mutations")
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", *SUITE, "-q", "-rf", "-p", "no:cacheprovider",
                               "--tb=line"], cwd=dest, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if show_output:
            print(proc.stdout[-6000:], proc.stderr[-2000:])
        failing = sorted(set(re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.MULTILINE)))
        failing = [re.sub(r"\[.*\]$", "", f) for f in failing]
        return sorted(set(failing)), seconds, line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", help="run only these mutations (by name); repeatable")
    parser.add_argument("--show-output", action="store_true", help="print the tail of each pytest run")
    parser.add_argument("--skip-baseline", action="store_true", help="do not first check that the clean copy passes")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    unknown = set(args.only or ()) - {m.name for m in MUTATIONS}
    if unknown:
        known = ", ".join(m.name for m in MUTATIONS)
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}; known: {known}")
    if not args.skip_baseline:
        failing, seconds, _ = run(None, args.show_output)
        print(f"baseline (no mutation): {len(failing)} failing tests in {seconds:.0f} s", flush=True)
        if failing:
            print("the unmutated suite fails; fix that first:", *failing, sep="\n  ")
            return 1
    missed = []
    print("| mutation | change | caught by |\n| --- | --- | --- |", flush=True)
    for mutation in chosen:
        failing, seconds, line = run(mutation, args.show_output)
        caught = "; ".join(f"`{f}`" for f in failing) if failing else "**NOT CAUGHT**"
        print(f"| `{mutation.name}` ({seconds:.0f} s) | `{mutation.file}:{line}`: {mutation.description} | {caught} |",
              flush=True)
        if not failing:
            missed.append(mutation.name)
    if missed:
        print("not caught:", ", ".join(missed))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
