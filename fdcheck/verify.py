"""``fdcheck verify``: run the grid every claim needs, evaluate the claims, write ``claims.json`` and the report.

The pipeline is DESIGN.md's bottom row: the grid of runs (``d × seed × variant``) goes through
:func:`fdcheck.sweep.run_sweep` into the results store under ``OUT/store`` (so an interrupted verify resumes and
recomputes only the unfinished runs), :func:`fdcheck.claims.claims_document` turns the records into verdicts, and
:func:`fdcheck.report.write_report` writes the report beside ``claims.json``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._atomic import atomic_write_json
from .claims import CLAIMS, claims_document, exit_code, load_deviations

__all__ = ["DEFAULT_GRID", "QUICK_GRID", "Grid", "check_backend", "run_verify", "verdict_table"]


@dataclass(frozen=True)
class Grid:
    """The runs of a verification: every ``d``, seeds ``0..seeds-1`` and every variant the claims read."""

    d: tuple[int, ...]
    seeds: int
    overrides: tuple[tuple[str, Any], ...] = ()  # ModelConfig fields set in every run, e.g. (("steps", 2000),)
    d1_rule: str = "scaled"  # "scaled": d1 = 16 d (ModelConfig.scaled); "square": d1 = d², the paper's poly(d)

    def __post_init__(self) -> None:
        if not self.d or any(not isinstance(d, int) or d < 3 for d in self.d):
            raise ValueError(f"d={list(self.d)!r} must be a non-empty list of integers >= 3")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds={self.seeds!r} must be an integer >= 1")
        if self.d1_rule not in ("scaled", "square"):
            raise ValueError(f"d1_rule={self.d1_rule!r} is not allowed; allowed: scaled, square")
        if self.d1_rule == "square" and "d1" in dict(self.overrides):
            raise ValueError("d1 is set both by d1_rule='square' and by an override; choose one")

    @property
    def variants(self) -> tuple[str, ...]:
        order = ("mask", "none", "none_schedule", "supervised")
        needed = set().union(*(c.variants for c in CLAIMS))
        return tuple(v for v in order if v in needed)

    def specs(self, backend: str = "numpy") -> list[Any]:
        """One :class:`fdcheck.sweep.RunSpec` per run, largest ``d`` first so the slowest runs start early."""
        from .sweep import RunSpec

        overrides = dict(self.overrides) | ({} if backend == "numpy" else {"backend": backend})
        def at(d: int) -> tuple[tuple[str, Any], ...]:
            return tuple(sorted((overrides | ({"d1": d * d} if self.d1_rule == "square" else {})).items()))

        return [RunSpec(d=d, seed=s, variant=v, overrides=at(d))
                for d in sorted(self.d, reverse=True) for s in range(self.seeds) for v in self.variants]


# d = 16, 32, 64 along one scaling (ModelConfig.scaled), three seeds: about 7 minutes on two cores.
DEFAULT_GRID = Grid(d=(16, 32, 64), seeds=3)
# Smaller d and two seeds (seeds that disagree make a claim inconclusive, which one seed cannot show): about a
# minute on two cores.
QUICK_GRID = Grid(d=(12, 16, 24), seeds=2)


def verdict_table(document: dict[str, Any]) -> str:
    """A short plain-text verdict table for the terminal."""
    rows = [("claim", "paper", "verdict", "value at each d (mean over seeds) vs threshold")]
    for c in document["claims"]:
        verdict = c["verdict"].upper() + (" (expected)" if c["expected_fail"] else "")
        cells = ", ".join(f"d={r['d']}: {r['mean']:.3g} {c['comparison']} {r['threshold']:.3g}"
                          for r in c["trend"]["per_d"])
        rows.append((c["id"], c["paper_ref"].split(" (")[0], verdict, cells or "no runs"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3] for r in rows]
    counts = {}
    for c in document["claims"]:
        key = c["verdict"] + (" (expected)" if c["expected_fail"] else "")
        counts[key] = counts.get(key, 0) + 1
    lines.append("")
    lines.append(", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    return "\n".join(lines)


def check_backend(backend: str) -> None:
    """Raise ``ValueError`` unless ``backend`` can run a verification here (``numpy``; ``cupy`` with a GPU)."""
    if backend not in ("numpy", "cupy"):
        raise ValueError(f"backend={backend!r} is not supported; allowed: numpy, cupy")
    if backend == "cupy":
        from .backend import cupy_available

        if not cupy_available():
            raise ValueError("backend='cupy' needs CuPy and a visible GPU; install the 'gpu' extra on a GPU machine")


def run_verify(out: str | Path, grid: Grid, *, backend: str = "numpy", scheduler: str | None = None,
               workers: int = 2, progress: bool | None = None, retry_errors: bool = False,
               command: str = "fdcheck verify", quick: bool = False) -> tuple[dict[str, Any], int]:
    """Run (or resume) the grid, evaluate every claim and write ``claims.json`` and the report under ``out``.

    Returns the claims document and the exit code of :func:`fdcheck.claims.exit_code`.
    """
    from .sweep import ResultsStore, run_sweep

    check_backend(backend)
    out = Path(out)
    deviations = load_deviations()  # fail on a broken deviations file before any training
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    specs = grid.specs(backend)
    store = ResultsStore(out / "store")
    executor = "dask" if scheduler else "local"
    records = run_sweep(specs, store, executor=executor, scheduler=scheduler, workers=workers,
                        progress=sys.stderr.isatty() if progress is None else progress, retry_errors=retry_errors)
    header = {
        "backend": backend,
        "command": command,
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 1),  # this invocation (a resumed verify counts only its part)
        "compute_seconds": round(sum(float(r.get("seconds") or 0) for r in records), 1),  # every run, one core each
        "store": "store",
        "store_version": store.version,  # fdcheck version + code fingerprint the store records were keyed by
        "runs": [r["key"] for r in records if r.get("key")],  # the store records this document was computed from
    }
    grid_doc = {"d": list(grid.d), "seeds": list(range(grid.seeds)), "variants": list(grid.variants), "quick": quick,
                "overrides": dict(grid.overrides), "d1_rule": grid.d1_rule}
    document = claims_document(records, grid=grid_doc, deviations=deviations, **header)
    atomic_write_json(out / "claims.json", document)
    from .report import write_report

    write_report(out, document, records, store_dir=out / "store")
    return document, exit_code(document)
