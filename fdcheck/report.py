"""Claim-verification reports: ``report.md``, ``report.html`` and ``figures/*.png`` from ``claims.json`` and the store.

A report shows at a glance which claims of Wen & Li (ICML 2021) hold, where (at which ``d``) and how strongly, with
the pictures a researcher would otherwise draw by hand: each claim's quantity against ``d``, the synthetic
counterparts of the paper's Figure 1 (neuron-by-atom weights), Figure 3 (a 2-D projection of the representations)
and Figure 4 (activation sparsity), and the Section 4 gradient split between ``span(M)`` and ``M⊥``.

One list of blocks (headings, paragraphs, tables, figures) is rendered twice, so the Markdown (for a code-hosting
site: pipe tables, relative image links) and the HTML (one self-contained file: inline CSS, figures as base64
``data:`` URIs, a Content-Security-Policy that forbids every fetch) always say the same thing. Tables are pandas
DataFrames. Figures use Matplotlib's object API on the Agg canvas, so no pyplot state leaks between figures or into
the caller. Every file is written atomically (temporary file, then ``os.replace``).

Inputs are the ``claims.json`` document (DESIGN.md's ``claims.json`` schema; each entry of its ``"claims"`` list is
what :func:`fdcheck.claims.evaluate_claim` returns) and the store records of :mod:`fdcheck.sweep` (its "Record
format"): ``{"key", "config", "metrics", "history", "seconds", "arrays", ...}`` where ``arrays`` names an ``.npz``
(``W``, ``b``, ``W0``, ``M``) relative to the store directory. A missing variant, metric or array file never
crashes the report: the panel is left out and the report says so.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import os
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from . import __version__
from ._atomic import atomic_write_bytes
from .backend import Random
from .config import ModelConfig
from .data import SparseCodingModel
from .claims import variant_of
from .network import features
from .sweep import VARIANTS

__all__ = [
    "CSP",
    "activation_fractions",
    "load_records",
    "markdown_table",
    "neuron_atom_matrix",
    "tsne_2d",
    "render_html",
    "render_markdown",
    "report_from_dir",
    "verdict_label",
    "verdict_table",
    "write_report",
]

# The page may load images only from data: URIs and styles only inline; scripts, fonts, frames and every other
# fetch are refused, so the HTML is provably readable offline and cannot leak a request.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

DPI = 110
FIGURE_SAMPLES = 2000  # fresh samples per variant for the sparsity histogram (Figure 4's counterpart)
PROJECTION_ATOMS = 8  # atoms shown in the 2-D projection: more than about 8 colours stop being distinguishable
PROJECTION_PER_ATOM = 40  # 320 points: t-SNE takes about a second per panel

# (augment, bias) of a run -> its variant name, as in fdcheck.sweep.VARIANTS.
VARIANT_ORDER = tuple(VARIANTS)  # mask, none, none_schedule, supervised
VARIANT_LABELS = {
    "mask": "contrastive, RandomMask",
    "none": "contrastive, no augmentation (b = 0)",
    "none_schedule": "contrastive, no augmentation, bias schedule",
    "supervised": "supervised",
}
VARIANT_COLORS = {"mask": "#1f77b4", "none": "#d62728", "none_schedule": "#ff7f0e", "supervised": "#2ca02c"}
_EXTRA_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

# Axis labels (with units) for the quantities of fdcheck.metrics.measure_all; anything else falls back to its key.
QUANTITY_LABELS = {
    "cos_fx_fxi": r"$\cos(f(x), f(\xi))$ (cosine, unitless)",
    "cos_fx_fMz": r"$\cos(f(x), f(Mz))$ (cosine, unitless)",
    "rel_dist_fx_fMz": r"$\|f(x)-f(Mz)\| / \|f(Mz)\|$ (ratio)",
    "frac_fMz_nonzero": r"fraction of samples with $f(Mz)\neq 0$",
    "span_energy": r"$\|P_M w_i\|^2 / \|w_i\|^2$, mean over neurons",
    "top_atom_share": "top atom's share of $\\|w_i\\|^2$, mean over neurons",
    "top3_atom_share": "top-3 atoms' share of $\\|w_i\\|^2$, mean over neurons",
    "n_atoms_mean": r"mean $|N_i|$ (atoms per neuron)",
    "atom_coverage": "fraction of atoms that are a neuron's top atom",
    "max_atom_neuron_frac": "max over atoms of the fraction of neurons using it",
    "activation_density": "fraction of (sample, neuron) pairs active",
    "dead_neuron_frac": "fraction of neurons never active",
    "weight_move_rel": r"$\|W-W_0\|_F / \|W_0\|_F$ (ratio)",
    "weight_move_perp_share": r"share of $\|W-W_0\|^2$ in $M^\perp$",
    "centroid_acc": "nearest-centroid accuracy (fraction)",
    "knn_acc": "1-nearest-neighbour accuracy (fraction)",
    "probe_reg_mse_features": "probe test MSE / Var(y), features",
    "probe_reg_mse_raw": "probe test MSE / Var(y), raw x",
    "probe_cls_acc_features": "probe test accuracy (fraction), features",
    "probe_cls_acc_raw": "probe test accuracy (fraction), raw x",
    "grad_perp_share_mask": r"share of $\|G\|^2$ in $M^\perp$, RandomMask",
    "grad_perp_share_none": r"share of $\|G\|^2$ in $M^\perp$, no augmentation",
    "threshold_decoding_acc": "threshold-decoding accuracy (fraction)",
    "data_energy_ratio": r"mean $\|\xi\|^2$ / mean $\|Mz\|^2$ (ratio)",
    "data_active_proj_q01": r"1% quantile of $|\langle x, M_j\rangle|$ over active $(x, j)$",
    "data_noise_proj_max": r"max of $|\langle \xi, M_j\rangle|$ over samples and atoms",
    "data_noise_cos_max": r"max of $|\cos(\xi_i, \xi_k)|$ over pairs of samples",
    "view_corr_perp_mask": r"corr. of the two views along $M^\perp$ (RandomMask)",
    "view_corr_perp_none": r"corr. of the two views along $M^\perp$ (no augm.)",
    "view_corr_atoms_mask": r"corr. of the two views along atoms $M_j$ (RandomMask)",
    "view_corr_atoms_none": r"corr. of the two views along atoms $M_j$ (no augm.)",
    "peer_bestcos_median": r"median over atoms of $\max_i |\cos(w_i, M_j)|$",
    "peer_bestcos_max": r"max over atoms of $\max_i |\cos(w_i, M_j)|$",
    "peer_bestcos_min": r"min over atoms of $\max_i |\cos(w_i, M_j)|$",
}

_COMPARISON_SYMBOL = {">=": "≥", "<=": "≤", ">": ">", "<": "<"}


# --------------------------------------------------------------------------------------------------- blocks
# The report is a list of blocks rendered to Markdown and to HTML by the same code path.


@dataclass
class Span:
    """Inline text: ``kind`` is ``text``, ``code`` or ``bold``."""

    text: str
    kind: str = "text"


@dataclass
class Heading:
    level: int
    spans: list[Span]
    anchor: str | None = None


@dataclass
class Para:
    spans: list[Span]
    emphasis: bool = False  # a caption or an aside: italic in both renderings


@dataclass
class Bullets:
    items: list[list[Span]]


@dataclass
class Table:
    frame: pd.DataFrame  # every cell a plain string
    verdict_column: str | None = None  # cells of this column get a coloured badge in HTML
    verdict_kinds: list[str] | None = None  # the badge class of each row


@dataclass
class FigureOut:
    """One PNG of the report (or the reason it was not drawn)."""

    name: str  # file name under figures/
    alt: str
    caption: str
    png: bytes | None = None
    skipped: list[str] = field(default_factory=list)  # panels or the whole figure left out, and why


def _t(text: Any) -> Span:
    return Span(str(text))


def _c(text: Any) -> Span:
    return Span(str(text), "code")


def _b(text: Any) -> Span:
    return Span(str(text), "bold")


# ------------------------------------------------------------------------------------------- formatting


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v: Any) -> float:
    return float(v) if _finite(v) else 0.0


def _fmt(v: Any) -> str:
    """A number in 3 significant digits (integers as they are); ``n/a`` for None/NaN."""
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        return f"{v:.3g}"
    return str(v)


def _fmt_seconds(s: Any) -> str:
    if not _finite(s):
        return "n/a"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    minutes, sec = divmod(int(round(s)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {sec:02d} s" if hours else f"{minutes} min {sec:02d} s"


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
    return slug or "claim"


def _compare(value: Any, comparison: str, threshold: Any) -> bool | None:
    if not (_finite(value) and _finite(threshold)):
        return None
    ops = {">=": value >= threshold, "<=": value <= threshold, ">": value > threshold, "<": value < threshold}
    return ops.get(comparison)


def verdict_label(claim: dict) -> tuple[str, str]:
    """The verdict as shown in the report, and its kind (``pass``, ``fail``, ``expected-fail``, ...).

    A claim recorded as expected to fail is marked so, whatever its verdict: a fail that was expected counts as
    fine (``fdcheck verify`` exits 0), a pass of an expected fail counts as a failure.

    Args:
        claim: one entry of ``claims_doc["claims"]``.

    Returns:
        ``(label, kind)``; ``kind`` is one of ``pass``, ``fail``, ``expected-fail``, ``unexpected-pass``,
        ``inconclusive``.
    """
    verdict = str(claim.get("verdict", "inconclusive"))
    expected_fail = bool(claim.get("expected_fail", False))
    # Plain symbols rather than emoji: they exist in every common font, so a headless or offline reader sees them.
    if verdict == "pass" and not expected_fail:
        return "✓ pass", "pass"
    if verdict == "pass":
        return "! pass, but expected to fail", "unexpected-pass"
    if verdict == "fail" and expected_fail:
        return "✗ fail (expected fail)", "expected-fail"
    if verdict == "fail":
        return "✗ fail", "fail"
    return f"? {verdict}", "inconclusive"


def _variant_of(record: dict) -> str:
    if record.get("variant"):
        return str(record["variant"])
    cfg = record.get("config") or {}
    return variant_of(cfg) or f"{cfg.get('augment')}/{cfg.get('bias')}"


def _variant_sort_key(v: str) -> tuple[int, str]:
    return (VARIANT_ORDER.index(v) if v in VARIANT_ORDER else len(VARIANT_ORDER), v)


def _variant_color(v: str, others: Sequence[str]) -> str:
    if v in VARIANT_COLORS:
        return VARIANT_COLORS[v]
    extra = sorted(o for o in others if o not in VARIANT_COLORS)
    return _EXTRA_COLORS[extra.index(v) % len(_EXTRA_COLORS)] if v in extra else "#333333"


def _variant_label(v: str) -> str:
    return VARIANT_LABELS.get(v, v)


def _quantity_label(q: str) -> str:
    return QUANTITY_LABELS.get(q, q)


# ------------------------------------------------------------------------------------------------ I/O


def _arrays_path(record: dict, store_dir: Path | None) -> Path | None:
    name = record.get("arrays")
    if not name:
        return None
    p = Path(name)
    if p.is_absolute():
        return p
    return (store_dir / p) if store_dir is not None else p


def _load_arrays(record: dict, store_dir: Path | None) -> tuple[dict[str, np.ndarray] | None, str | None]:
    """The run's ``W``, ``b``, ``M`` (and ``W0``) from its npz, or ``(None, why not)``."""
    path = _arrays_path(record, store_dir)
    if path is None:
        return None, "the record names no arrays file"
    if not path.is_file():
        return None, f"its arrays file {path.name} is missing"
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("W", "b", "M") if k not in npz.files]
            if missing:
                return None, f"its arrays file {path.name} lacks {', '.join(missing)}"
            out = {k: np.asarray(npz[k]) for k in ("W", "b", "M", "W0") if k in npz.files}
    except (OSError, ValueError) as exc:  # a truncated or corrupt npz
        return None, f"its arrays file {path.name} could not be read ({exc})"
    return out, None


def load_records(store_dir: str | os.PathLike, version: str | None = None) -> list[dict]:
    """Every valid run record in the results store at ``store_dir``, sorted by ``(d, variant, seed)``.

    Reads through :class:`fdcheck.sweep.ResultsStore`, which checks each record's checksum and arrays and leaves
    out (with a ``CorruptRecordWarning``) any damaged one.

    Args:
        store_dir: the results store directory.
        version: the fdcheck version whose records to read (the one in ``claims.json``); defaults to this one.

    Returns:
        The records, each a dict in the record format of :mod:`fdcheck.sweep`.
    """
    from .sweep import ResultsStore

    root = Path(store_dir)
    if not root.is_dir():
        raise ValueError(f"store_dir={str(root)!r} is not a directory")
    records = ResultsStore(root, version=version).records()
    records.sort(key=lambda r: (r["config"].get("d", 0), _variant_sort_key(_variant_of(r)), r["config"].get("seed", 0)))
    return records


def _resolve_store(dir_: Path, claims_doc: dict) -> Path | None:
    store = claims_doc.get("store")
    candidates = []
    if store:
        p = Path(store)
        candidates += [p] if p.is_absolute() else [dir_ / p, p]
    candidates += [dir_ / "store", dir_ / "results"]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def _records_of_runs(records: list[dict], claims_doc: dict, claims_path: Path) -> list[dict]:
    """The records the verification used: those whose ``key`` is in ``claims_doc["runs"]``, when it has that list.

    A store may hold more runs than one verification used (another grid, a ``--set`` override, an older run), and
    the report must show the same runs the verdicts were computed from. A ``claims.json`` written before the
    ``"runs"`` field existed names none, and then every record is kept.
    """
    if "runs" not in claims_doc:
        return records
    runs = claims_doc["runs"]
    if not isinstance(runs, list) or not all(isinstance(k, str) for k in runs):
        raise ValueError(f"{claims_path}: 'runs' must be a list of record keys (strings), got {runs!r:.200}")
    keep = set(runs)
    return [r for r in records if r.get("key") in keep]


def report_from_dir(dir: str | os.PathLike) -> dict[str, Path]:  # noqa: A002 (the CLI's name for it)
    """Rewrite the report of a ``fdcheck verify`` output directory from its ``claims.json`` and results store.

    This is what ``fdcheck report --from DIR`` runs. The store is ``claims_doc["store"]`` (absolute, or relative to
    ``DIR`` or to the working directory), else ``DIR/store`` or ``DIR/results``. When ``claims.json`` lists the
    keys of the runs its verdicts used (``"runs"``), only those records are shown; an older ``claims.json`` without
    that field shows every record of its fdcheck version.

    Args:
        dir: the directory holding ``claims.json``; the report is written there.

    Returns:
        The paths written, as :func:`write_report` returns them.
    """
    root = Path(dir)
    claims_path = root / "claims.json"
    if not claims_path.is_file():
        raise ValueError(f"dir={str(root)!r} holds no claims.json; expected the output directory of fdcheck verify")
    try:
        claims_doc = json.loads(claims_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{claims_path} is not valid JSON: {exc}") from exc
    if not isinstance(claims_doc, dict) or not isinstance(claims_doc.get("claims"), list):
        raise ValueError(f"{claims_path} has no 'claims' list; it is not a claims.json written by fdcheck verify")
    store_dir = _resolve_store(root, claims_doc)
    version = claims_doc.get("store_version") or claims_doc.get("fdcheck_version")
    records = load_records(store_dir, version=str(version) if version else None) if store_dir is not None else []
    records = _records_of_runs(records, claims_doc, claims_path)
    return write_report(root, claims_doc, records, store_dir=store_dir, regenerate_from=root)


# ------------------------------------------------------------------------------------------------ figures


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the object API: this figure has its own Agg canvas, pyplot is never touched
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # No "Software" tag: the PNG is then byte-for-byte reproducible and carries no URL.
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _log2_d_axis(ax: Any, ds: Sequence[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ds))
    ax.set_xticklabels([str(d) for d in ds])
    ax.xaxis.set_minor_locator(NullLocator())
    lo, hi = min(ds), max(ds)
    ax.set_xlim(lo / 2**0.35, hi * 2**0.35)
    ax.set_xlabel("d (number of atoms; log scale)")


def _ok(record: dict) -> bool:
    """A successful run: the sweep also hands back failed (``error``) and ``lost`` runs, without metrics."""
    return record.get("status", "ok") == "ok" and isinstance(record.get("metrics"), dict)


def _same(a: Sequence[float], b: Sequence[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= 1e-9 * (1 + abs(x)) for x, y in zip(a, b))


def _claim_figure(claim: dict, records: Sequence[dict] = ()) -> FigureOut:
    """Figure (a): the claim's quantity against ``d``, a dot per seed and a mean line per variant, the threshold.

    The claim's own variant is drawn with a heavy line; the same quantity measured on the other variants of the
    store is drawn lighter for comparison (augmentation against none), unless it repeats the claim's values
    (a data-only quantity) or is the threshold itself (a comparative claim).
    """
    cid = str(claim.get("id", "?"))
    sym = _COMPARISON_SYMBOL.get(str(claim.get("comparison", "")), str(claim.get("comparison", "")) or "?")
    out = FigureOut(
        name=f"claim_{_slug(cid)}.png",
        alt=f"{cid}: measured value against d with the threshold",
        caption=(f"{cid}: the measured value against d. Each dot is one seed, each line joins the means over "
                 f"seeds; the dashed line is the threshold (the claim needs value {sym} threshold)."),
    )
    evidence = [e for e in claim.get("evidence") or [] if _finite(e.get("value")) and _finite(e.get("d"))]
    if not evidence:
        out.skipped.append(f"no finite evidence value for claim {cid}, so no figure")
        return out
    quantities = list(dict.fromkeys(str(e.get("quantity") or claim.get("quantity") or "value") for e in evidence))
    fig = _new_figure(5.0 * min(len(quantities), 3) + 3.6, 4.2)
    axes = fig.subplots(1, len(quantities), squeeze=False)[0]
    threshold_text = str(claim.get("threshold") or "")
    match = re.search(r"\[(\w+)\]", threshold_text)
    threshold_variant = match.group(1) if match else None
    for ax, q in zip(axes, quantities):
        ev = [e for e in evidence if str(e.get("quantity") or claim.get("quantity") or "value") == q]
        series: dict[str, dict[tuple[int, int], float]] = {}
        for e in ev:
            series.setdefault(str(e.get("augment", "?")), {})[(int(e["d"]), int(e.get("seed") or 0))] = float(e["value"])
        primary = set(series)
        thresholds = {(int(e["d"]), int(e.get("seed") or 0)): float(e["threshold"]) for e in ev
                      if _finite(e.get("threshold"))}
        context: dict[str, dict[tuple[int, int], float]] = {}
        for r in records:
            v = _variant_of(r)
            value = (r.get("metrics") or {}).get(q) if _ok(r) else None
            if v not in primary and _finite(value):
                context.setdefault(v, {})[(int(r["config"]["d"]), int(r["config"].get("seed", 0)))] = float(value)
        ref = next(iter(series.values()))
        for v, pts in list(context.items()):
            common = sorted(set(pts) & set(ref))
            common_t = sorted(set(pts) & set(thresholds))
            if (common and _same([pts[k] for k in common], [ref[k] for k in common])) or (
                    common_t and _same([pts[k] for k in common_t], [thresholds[k] for k in common_t])):
                del context[v]  # the same numbers as the claim's own runs, or the threshold itself
        variants = sorted(set(series) | set(context), key=_variant_sort_key)
        ds = sorted({d for pts in (*series.values(), *context.values()) for d, _ in pts})
        for k, v in enumerate(variants):
            pts = series.get(v) or context[v]
            own = v in series
            color = _variant_color(v, variants)
            # variants side by side around each d, so dots of different variants never hide each other
            shift = 2 ** ((k - (len(variants) - 1) / 2) * 0.05)
            ax.scatter([d * shift for d, _ in pts], list(pts.values()), s=24 if own else 14, color=color,
                       alpha=0.6 if own else 0.45, edgecolors="none", zorder=3)
            vds = sorted({d for d, _ in pts})
            means = [float(np.mean([y for (d2, _), y in pts.items() if d2 == d])) for d in vds]
            n_seeds = max(sum(1 for d2, _ in pts if d2 == d) for d in vds)
            seeds = f"{n_seeds} seed{'s' if n_seeds != 1 else ''}"
            label = textwrap.fill(f"{_variant_label(v)}: " + ("the claim's runs" if own else "for comparison")
                                  + f" (mean of {seeds})", 42)
            ax.plot([d * shift for d in vds], means, "-o" if own else ":o", color=color, ms=4 if own else 3,
                    lw=2.0 if own else 1.2, alpha=1.0 if own else 0.75, zorder=4, label=label)
        if thresholds:
            tds = sorted({d for d, _ in thresholds})
            tmeans = [float(np.mean([t for (d2, _), t in thresholds.items() if d2 == d])) for d in tds]
            tcolor = VARIANT_COLORS.get(threshold_variant, "black") if threshold_variant else "black"
            varies = any(len({t for (d2, _), t in thresholds.items() if d2 == d}) > 1 for d in tds)
            words = re.sub(r"\[(\w+)\]", lambda m: f"of the {m.group(1)} runs", threshold_text)
            what = f"threshold: {words}" if threshold_text else "threshold"
            label = textwrap.fill(f"{what}{' (mean over seeds; short dashes: each seed)' if varies else ''}; "
                                  f"pass: value {sym} threshold", 42)
            if len(set(thresholds.values())) == 1:
                ax.axhline(tmeans[0], ls="--", color=tcolor, lw=1.5, zorder=2, label=label)
            else:
                # a segment at each d (visible even with one d), joined across d
                for i, (d, t) in enumerate(zip(tds, tmeans)):
                    ax.hlines(t, d / 2**0.25, d * 2**0.25, colors=tcolor, linestyles="--", lw=1.5, zorder=2,
                              label=label if i == 0 else None)
                if len(tds) > 1:
                    ax.plot(tds, tmeans, ":", color=tcolor, lw=1.0, zorder=2)
                if varies:
                    ax.scatter([d for d, _ in thresholds], list(thresholds.values()), marker="_", s=160,
                               color=tcolor, linewidths=1.5, zorder=2)
        _log2_d_axis(ax, ds)
        ax.set_ylabel(_quantity_label(q))
        ax.grid(True, alpha=0.3)
        if len(quantities) > 1:
            ax.set_title(q, fontsize=9)
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
                  title="dots: one per seed", title_fontsize=7.5, alignment="left")
    label, _ = verdict_label(claim)
    statement = textwrap.fill(str(claim.get("statement", "")), width=int(70 * min(len(quantities), 3) + 40))
    fig.suptitle(f"{cid} — {claim.get('paper_ref', '')}: {label.split(' ', 1)[-1]}\n{statement}", fontsize=9.5)
    out.png = _png(fig)
    return out


@dataclass
class _Run:
    record: dict
    arrays: dict[str, np.ndarray]


def _figure_runs(records: list[dict], store_dir: Path | None, variants: Iterable[str]) -> tuple[dict[str, _Run], int | None, int | None, list[str]]:
    """For each variant, the run at the largest ``d`` (seed 0, else the smallest seed) whose arrays load."""
    notes: list[str] = []
    with_arrays = [r for r in records if _ok(r) and r.get("arrays")]
    if not with_arrays:
        return {}, None, None, ["no record names an arrays file"]
    d = max(int(r["config"]["d"]) for r in with_arrays)
    at_d = [r for r in with_arrays if int(r["config"]["d"]) == d]
    seeds = sorted({int(r["config"].get("seed", 0)) for r in at_d})
    seed = 0 if 0 in seeds else seeds[0]
    runs: dict[str, _Run] = {}
    for v in variants:
        cands = [r for r in at_d if _variant_of(r) == v and int(r["config"].get("seed", 0)) == seed]
        if not cands:
            notes.append(f"no run of variant '{v}' at d = {d}, seed {seed}")
            continue
        arrays, why = _load_arrays(cands[0], store_dir)
        if arrays is None:
            notes.append(f"the run of variant '{v}' at d = {d}, seed {seed} is left out: {why}")
            continue
        runs[v] = _Run(cands[0], arrays)
    return runs, d, seed, notes


def _eval_children(config: dict, n: int) -> list[Random]:
    """Children of the run's ``eval_rng`` (the seeds contract: ``root.spawn(4)[3]``), for figure samples."""
    root = Random(int(config.get("seed", 0)), np)
    eval_rng = root.spawn(4)[3]
    return eval_rng.spawn(n)


def neuron_atom_matrix(W: Any, M: Any) -> tuple[np.ndarray, np.ndarray]:
    """``|<w_i, M_j>| / ||w_i||`` with the neurons sorted by their top atom (then by that entry, largest first).

    Each row is the neuron's ``|cos|`` with every atom: a one-atom neuron has a single entry near 1, a neuron in
    ``M⊥`` a row near 0 (the squares of a row sum to the neuron's share of ``||w_i||²`` on ``span(M)``, at most 1).

    Args:
        W: ``(m, d1)`` weights, one row per neuron.
        M: ``(d1, d)`` dictionary.

    Returns:
        ``(matrix (m, d), order)``: the sorted matrix and the neuron index of each of its rows.
    """
    W = np.asarray(W, dtype=np.float64)
    M = np.asarray(M, dtype=np.float64)
    norms = np.linalg.norm(W, axis=1)
    cos = np.abs(W @ M) / np.where(norms > 0, norms, 1.0)[:, None]  # a zero neuron gives a zero row
    top = np.argmax(cos, axis=1)
    order = np.lexsort((-cos[np.arange(len(top)), top], top))
    return cos[order], order


def activation_fractions(W: Any, b: Any, x: Any) -> np.ndarray:
    """The fraction of the ``m`` neurons with ``f_i(x) ≠ 0`` for each row of ``x``: shape ``(n,)``."""
    f = np.asarray(features(np.asarray(W), np.asarray(b), np.asarray(x)))
    return np.mean(f != 0, axis=1)


def tsne_2d(f: Any, seed: int = 0) -> np.ndarray | None:
    """A 2-D t-SNE embedding of the rows of ``f`` (scikit-learn, PCA initialisation, fixed seed).

    Returns:
        ``(n, 2)`` coordinates, or ``None`` when every row is the same (nothing to embed).
    """
    f = np.asarray(f, dtype=np.float64)
    if f.shape[0] < 2 or float(np.max(np.ptp(f, axis=0))) == 0.0:
        return None
    from sklearn.manifold import TSNE  # imported here: only this figure needs it, and it is slow to import

    perplexity = float(min(30.0, (f.shape[0] - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=400,
                random_state=seed).fit_transform(f)


def _weights_figure(runs: dict[str, _Run], d: int | None, seed: int | None, notes: list[str]) -> FigureOut:
    """Figure (b), Figure 1's counterpart: ``|cos(w_i, M_j)|`` with neurons sorted by their top atom."""
    out = FigureOut(
        name="weights_neuron_atom.png",
        alt="neuron-by-atom matrix |<w_i, M_j>| / ||w_i|| for each training variant",
        caption=(f"Neuron-by-atom matrix |<w_i, M_j>| / ||w_i|| at d = {d}, seed {seed} (rows: neurons sorted by "
                 "their top atom; a bright single cell per row is a neuron that learned one atom, a dark row is a "
                 "neuron that lies mostly in M⊥). The synthetic counterpart of the paper's Figure 1."),
        skipped=list(notes),
    )
    shown = [v for v in sorted(runs, key=_variant_sort_key)]
    if not shown:
        out.skipped.append("no run with arrays, so no neuron-by-atom figure")
        return out
    fig = _new_figure(3.3 * len(shown) + 1.2, 4.6)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    image = None
    for ax, v in zip(axes, shown):
        W, M = runs[v].arrays["W"], runs[v].arrays["M"]
        matrix, _ = neuron_atom_matrix(W, M)
        share = float(np.mean(np.max(matrix, axis=1) ** 2))
        image = ax.imshow(matrix, aspect="auto", interpolation="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_title(f"{_variant_label(v)}\nmean top-atom share of $\\|w_i\\|^2$: {share:.2f}", fontsize=8.5)
        ax.set_xlabel(f"atom j (d = {M.shape[1]})")
        if ax is axes[0]:
            ax.set_ylabel(f"neuron i (m = {W.shape[0]}), sorted by top atom")
    fig.colorbar(image, ax=list(axes), label=r"$|\langle w_i, M_j\rangle| \,/\, \|w_i\|$", shrink=0.9)
    fig.suptitle(f"What each neuron learned, d = {d}, seed {seed}", fontsize=10)
    out.png = _png(fig)
    return out


def _sparsity_figure(runs: dict[str, _Run], d: int | None, seed: int | None, notes: list[str]) -> FigureOut:
    """Figure (c), Figure 4's counterpart: histogram over fresh samples of the fraction of active neurons."""
    out = FigureOut(
        name="activation_sparsity.png",
        alt="histograms of the fraction of neurons active per sample, per training variant",
        caption=(f"Fraction of the m neurons with f_i(x) ≠ 0 on each of {FIGURE_SAMPLES} fresh samples x = Mz + ξ "
                 f"(d = {d}, seed {seed}; samples from the run's eval stream). Sparse firing with augmentation, dense "
                 "firing without: the synthetic counterpart of the paper's Figure 4."),
        skipped=list(notes),
    )
    shown = sorted(runs, key=_variant_sort_key)
    if not shown:
        out.skipped.append("no run with arrays, so no sparsity histogram")
        return out
    # one panel per variant on a shared x axis: overlaid histograms hide each other when two variants agree
    fig = _new_figure(6.6, 0.6 + 1.35 * len(shown))
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False)[:, 0]
    bins = np.linspace(0.0, 1.0, 51)
    for ax, v in zip(axes, shown):
        run = runs[v]
        cfg = run.record["config"]
        M = run.arrays["M"]
        model = SparseCodingModel(M, float(cfg["p"]), float(cfg["noise_variance"]))
        rng = _eval_children(cfg, 2)[0]
        x = model.sample(FIGURE_SAMPLES, rng).x
        active = activation_fractions(run.arrays["W"], run.arrays["b"], x)
        color = _variant_color(v, shown)
        weights = np.full(active.shape, 100.0 / active.size)
        ax.hist(active, bins=bins, weights=weights, color=color, alpha=0.55, edgecolor=color, linewidth=1.0)
        ax.axvline(float(active.mean()), color="black", ls="--", lw=1.0)
        ax.text(0.01, 0.92, f"{_variant_label(v)}: mean {active.mean():.2f} (dashed)", transform=ax.transAxes,
                va="top", fontsize=8.5, bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})
        ax.set_ylim(0, 105)
        ax.set_yticks([0, 50, 100])
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlim(0, 1)
    axes[-1].set_xlabel("fraction of the m neurons active on a sample")
    fig.supylabel("share of samples (%)", fontsize=10)
    fig.suptitle(f"Activation sparsity on {FIGURE_SAMPLES} fresh samples, d = {d}, seed {seed}", fontsize=10)
    out.png = _png(fig)
    return out


def _projection_figure(runs: dict[str, _Run], d: int | None, seed: int | None, notes: list[str]) -> FigureOut:
    """Figure (d), Figure 3's counterpart: t-SNE of ``f(x)`` for samples with exactly one active atom.

    t-SNE rather than PCA: the learned sparse features of 8 atoms span 8 orthogonal directions, and the top two
    principal components show two of them, piling the other six clusters on the origin (seen when this figure was
    first drawn with PCA).
    """
    out = FigureOut(
        name="representation_projection.png",
        alt="2-D t-SNE embedding of the representations of one-atom samples, coloured by the atom",
        caption=(f"Representations f(x) of samples with exactly one active atom, x = M_j + ξ for the first "
                 f"{PROJECTION_ATOMS} atoms ({PROJECTION_PER_ATOM} samples each; z_j = +1, since f is odd the "
                 f"samples with z_j = -1 are the mirror image), embedded in 2-D by t-SNE (scikit-learn, "
                 f"perplexity 30, PCA initialisation, fixed seed; d = {d}, seed {seed}). Separate clusters: the "
                 "representation encodes the atom; one mixed cloud: it encodes the noise. Each panel's title gives "
                 "the run's held-out nearest-neighbour accuracy of the atom and its sign (metric knn_acc, chance "
                 "1/(2d)), the number behind such clusters. The synthetic counterpart of the paper's Figure 3."),
        skipped=list(notes),
    )
    shown = sorted(runs, key=_variant_sort_key)
    if not shown:
        out.skipped.append("no run with arrays, so no projection")
        return out
    fig = _new_figure(3.6 * len(shown) + 1.6, 3.9)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    handles = []
    for ax, v in zip(axes, shown):
        run = runs[v]
        cfg = run.record["config"]
        M = run.arrays["M"]
        k = min(PROJECTION_ATOMS, M.shape[1])
        model = SparseCodingModel(M, float(cfg["p"]), float(cfg["noise_variance"]))
        rng = _eval_children(cfg, 2)[1]
        labels = np.repeat(np.arange(k), PROJECTION_PER_ATOM)
        # exactly one active atom with z_j = +1: conditioning the model on that event is x = M_j + ξ
        xi = model.sample_noise(labels.size, rng)
        x = M.T[labels] + xi
        proj = tsne_2d(np.asarray(features(run.arrays["W"], run.arrays["b"], x)), seed=int(cfg.get("seed", 0)))
        if proj is None:
            proj = np.zeros((labels.size, 2))
            ax.text(0.5, 0.5, "all representations equal\n(nothing to embed)", ha="center", va="center",
                    transform=ax.transAxes, fontsize=9)
        handles = []
        for j in range(k):
            sel = labels == j
            handles.append(ax.scatter(proj[sel, 0], proj[sel, 1], s=10, alpha=0.7, color=f"C{j}", edgecolors="none",
                                      label=f"atom {j}"))
        ax.set_xlabel("t-SNE 1 (arbitrary units)")
        if ax is axes[0]:
            ax.set_ylabel("t-SNE 2 (arbitrary units)")
        # knn_acc (1-nearest-neighbour) is the number a t-SNE picture shows as clusters; centroid_acc rewards
        # linear dense features too (fdcheck.metrics.cluster_accuracy)
        metrics = run.record.get("metrics") or {}
        name, acc = next(((k, metrics[k]) for k in ("knn_acc", "centroid_acc") if _finite(metrics.get(k))),
                         (None, None))
        what = {"knn_acc": "nearest-neighbour", "centroid_acc": "nearest-centroid"}.get(name, "")
        ax.set_title(_variant_label(v) + (f"\n{what} accuracy {acc:.2f} ({name})" if name else ""), fontsize=9)
        ax.grid(True, alpha=0.3)
    fig.legend(handles=handles, loc="outside right center", fontsize=8, title="active atom", markerscale=1.6)
    fig.suptitle(f"Representations of one-atom samples, t-SNE, d = {d}, seed {seed}", fontsize=10)
    out.png = _png(fig)
    return out


def _per_d_seed_metrics(records: list[dict], keys: Sequence[str]) -> dict[str, dict[int, list[float]]]:
    """``{key: {d: [value per seed]}}``; one record per (d, seed), since Section 4's quantities are taken at W0,
    which every variant of a (d, seed) shares (the seeds contract)."""
    chosen: dict[tuple[int, int], dict] = {}
    for r in sorted(records, key=lambda r: _variant_sort_key(_variant_of(r))):
        k = (int(r["config"]["d"]), int(r["config"].get("seed", 0)))
        if k in chosen:
            continue
        if _ok(r) and any(_finite(r["metrics"].get(key)) for key in keys):
            chosen[k] = r
    out: dict[str, dict[int, list[float]]] = {}
    for (d, _), r in sorted(chosen.items()):
        for key in keys:
            v = r["metrics"].get(key)
            if _finite(v):
                out.setdefault(key, {}).setdefault(d, []).append(float(v))
    return out


def _bars(ax: Any, series: list[tuple[str, str, dict[int, list[float]]]], ds: list[int]) -> None:
    """Grouped bars over ``d``: mean over seeds, min–max as error bars, the seeds as dots."""
    width = 0.8 / max(len(series), 1)
    for k, (label, color, by_d) in enumerate(series):
        xs, means, lo, hi = [], [], [], []
        for i, d in enumerate(ds):
            vals = by_d.get(d)
            if not vals:
                continue
            x = i + (k - (len(series) - 1) / 2) * width
            m = float(np.mean(vals))
            xs.append(x)
            means.append(m)
            lo.append(m - min(vals))
            hi.append(max(vals) - m)
            ax.scatter([x] * len(vals), vals, s=9, color="black", zorder=4)
        ax.bar(xs, means, width=width * 0.92, color=color, alpha=0.8, label=label, yerr=[lo, hi], capsize=3,
               error_kw={"elinewidth": 1, "ecolor": "#333333"})
    ax.set_xticks(range(len(ds)))
    ax.set_xticklabels([str(d) for d in ds])
    ax.set_xlabel("d (number of atoms)")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, frameon=False)


def _gradient_figure(records: list[dict]) -> FigureOut:
    """Figure (e), Section 4: the expected-gradient split between span(M) and M⊥ at W0, with and without mask."""
    out = FigureOut(
        name="gradient_split.png",
        alt="share of the expected gradient in M-perp at initialisation, with and without augmentation, over d",
        caption=("Section 4 (feature decoupling) at initialisation: the share ||P_⊥G||² / ||G||² of the expected "
                 "loss gradient G that lies in M⊥ (the dense-noise directions), and, where measured, the growth "
                 "rates −<G, PW> / ||PW||² of the span(M) and M⊥ parts PW of the neurons (per unit step size η: "
                 "negative means the part shrinks). Bars: mean over seeds; whiskers: min–max; dots: seeds. With RandomMask the two views' noise parts are independent, so the M⊥ part of the "
                 "gradient shrinks."),
    )
    share_keys = ("grad_perp_share_mask", "grad_perp_share_none")
    growth_keys = ("grad_growth_span_mask", "grad_growth_perp_mask", "grad_growth_span_none", "grad_growth_perp_none")
    shares = _per_d_seed_metrics(records, share_keys)
    growth = _per_d_seed_metrics(records, growth_keys)
    for key in share_keys + growth_keys:
        if key not in shares and key not in growth:
            out.skipped.append(f"metric {key} is in no record")
    if not shares and not growth:
        out.skipped.append("no gradient-split metric in any record, so no Section 4 figure")
        return out
    panels = [p for p in ((shares, share_keys), (growth, growth_keys)) if p[0]]
    fig = _new_figure(5.6 * len(panels), 3.9)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (data, keys) in zip(axes, panels):
        ds = sorted({d for by_d in data.values() for d in by_d})
        if keys is share_keys:
            series = [(f"{_variant_label(k.rsplit('_', 1)[1])}", VARIANT_COLORS[k.rsplit("_", 1)[1]], data[k])
                      for k in keys if k in data]
            _bars(ax, series, ds)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel(r"$\|P_\perp G\|^2 / \|G\|^2$ at $W_0$ (fraction)")
            ax.set_title("Share of the gradient in $M^\\perp$", fontsize=10)
        else:
            palette = {"grad_growth_span_mask": "#1f77b4", "grad_growth_perp_mask": "#9ecae1",
                       "grad_growth_span_none": "#d62728", "grad_growth_perp_none": "#f4a582"}
            names = {"grad_growth_span_mask": "span(M), RandomMask", "grad_growth_perp_mask": "M⊥, RandomMask",
                     "grad_growth_span_none": "span(M), no augmentation", "grad_growth_perp_none": "M⊥, no augmentation"}
            series = [(names[k], palette[k], data[k]) for k in keys if k in data]
            _bars(ax, series, ds)
            ax.set_ylabel("relative growth rate per unit η\n" + r"$-\langle G, PW\rangle / \|PW\|^2$, P: span(M) or $M^\perp$")
            ax.set_title("Growth of the span(M) and $M^\\perp$ parts at $W_0$", fontsize=10)
    out.png = _png(fig)
    return out


# ---------------------------------------------------------------------------------------------- tables


def _per_d_rows(claim: dict) -> list[dict]:
    """``trend.per_d`` of the claim, or, when absent, its evidence summarised per ``d`` (all variants pooled)."""
    per_d = (claim.get("trend") or {}).get("per_d")
    if per_d:
        return [r for r in per_d if isinstance(r, dict) and "d" in r]
    rows: dict[int, list[dict]] = {}
    for e in claim.get("evidence") or []:
        if _finite(e.get("d")):
            rows.setdefault(int(e["d"]), []).append(e)
    out = []
    for d, ev in sorted(rows.items()):
        vals = [float(e["value"]) for e in ev if _finite(e.get("value"))]
        thr = [float(e["threshold"]) for e in ev if _finite(e.get("threshold"))]
        out.append({"d": d, "mean": float(np.mean(vals)) if vals else None, "min": min(vals) if vals else None,
                    "max": max(vals) if vals else None, "threshold": thr[0] if thr else None})
    return out


def _measured_cell(row: dict, comparison: str) -> str:
    mean, lo, hi = row.get("mean"), row.get("min"), row.get("max")
    text = _fmt(mean)
    if _finite(lo) and _finite(hi) and _fmt(lo) != _fmt(hi):
        text += f" ({_fmt(lo)}–{_fmt(hi)})"
    thr = row.get("threshold")
    if _finite(thr):
        text += f"; need {_COMPARISON_SYMBOL.get(comparison, comparison)} {_fmt(thr)}"
    status = row.get("status")
    if status:
        text += {"holds": " ✓", "fails": " ✗", "split": " (seeds split)"}.get(str(status), f" ({status})")
    return text


def _trend_cell(trend: dict | None) -> str:
    if not trend:
        return "n/a"
    holds = trend.get("holds")
    observed = trend.get("observed", "n/a")
    if trend.get("expected") == "none":
        return f"none claimed (observed {observed})"
    mark = {True: "✓", False: "✗"}.get(holds, "–")
    return f"expected {trend.get('expected', 'n/a')}, observed {observed} {mark}"


def _grid_ds(claims_doc: dict) -> list[int]:
    ds = set()
    for d in (claims_doc.get("grid") or {}).get("d") or []:
        if _finite(d):
            ds.add(int(d))
    for c in claims_doc.get("claims") or []:
        for r in _per_d_rows(c):
            if _finite(r.get("d")):
                ds.add(int(r["d"]))
    return sorted(ds)


def verdict_table(claims_doc: dict) -> tuple[pd.DataFrame, list[str]]:
    """The verdict table: one row per claim, one ``d = …`` column per dimension of the grid.

    Returns:
        The table (all cells strings) and the verdict kind of each row (for the HTML badges).
    """
    ds = _grid_ds(claims_doc)
    rows, kinds = [], []
    for c in claims_doc.get("claims") or []:
        label, kind = verdict_label(c)
        comparison = str(c.get("comparison", ""))
        row = {"Claim": str(c.get("id", "?")), "Paper": str(c.get("paper_ref", "")),
               "Statement": str(c.get("statement", "")), "Verdict": label,
               "Quantity": str(c.get("quantity", ""))}
        per_d = {int(r["d"]): r for r in _per_d_rows(c) if _finite(r.get("d"))}
        for d in ds:
            row[f"d = {d}"] = _measured_cell(per_d[d], comparison) if d in per_d else "–"
        row["Trend in d"] = _trend_cell(c.get("trend"))
        rows.append(row)
        kinds.append(kind)
    columns = ["Claim", "Paper", "Statement", "Verdict", "Quantity", *[f"d = {d}" for d in ds], "Trend in d"]
    return pd.DataFrame(rows, columns=columns), kinds


def _evidence_table(claim: dict) -> pd.DataFrame:
    comparison = str(claim.get("comparison", ""))
    rows = []
    for e in claim.get("evidence") or []:
        meets = e["holds"] if isinstance(e.get("holds"), bool) else _compare(e.get("value"), comparison,
                                                                               e.get("threshold"))
        rows.append({
            "d": _fmt(e.get("d")), "seed": _fmt(e.get("seed")), "variant": str(e.get("augment", "?")),
            "quantity": str(e.get("quantity", claim.get("quantity", ""))), "value": _fmt(e.get("value")),
            "threshold": (f"{_COMPARISON_SYMBOL.get(comparison, comparison)} {_fmt(e.get('threshold'))}"
                          if _finite(e.get("threshold")) else "n/a"),
            "meets it": {True: "✓", False: "✗"}.get(meets, "–"),
            "_sort": (e.get("d") if _finite(e.get("d")) else 0, _variant_sort_key(str(e.get("augment", "?"))),
                      e.get("seed") if _finite(e.get("seed")) else 0),
        })
    rows.sort(key=lambda r: r["_sort"])
    frame = pd.DataFrame(rows, columns=["d", "seed", "variant", "quantity", "value", "threshold", "meets it", "_sort"])
    return frame.drop(columns="_sort")


def _trend_table(claim: dict) -> pd.DataFrame:
    comparison = str(claim.get("comparison", ""))
    rows = [{"d": _fmt(r.get("d")), "seeds": _fmt(r.get("n_seeds")), "mean over seeds": _fmt(r.get("mean")),
             "min": _fmt(r.get("min")), "max": _fmt(r.get("max")),
             "threshold": (f"{_COMPARISON_SYMBOL.get(comparison, comparison)} {_fmt(r.get('threshold'))}"
                           if _finite(r.get("threshold")) else "n/a"),
             "at this d": str(r.get("status", "n/a"))}
            for r in _per_d_rows(claim)]
    return pd.DataFrame(rows, columns=["d", "seeds", "mean over seeds", "min", "max", "threshold", "at this d"])


_MAIN_CONFIG_FIELDS = ("d1", "m", "p", "noise_variance", "tau", "lam", "eta", "steps", "t1", "batch", "negatives",
                       "keep_prob", "include_positive", "dtype", "backend")


def _runs_tables(records: list[dict]) -> tuple[pd.DataFrame, list[Span], pd.DataFrame]:
    """Configuration per (d, variant), the fields shared by every run, and the time of each run."""
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in records:
        groups.setdefault((int(r["config"]["d"]), _variant_of(r)), []).append(r)
    # ModelConfig's field order, whatever the order of the keys in the record (the store writes them sorted)
    order = {f.name: i for i, f in enumerate(dataclasses.fields(ModelConfig))}
    all_fields = sorted({k for r in records for k in r["config"]}, key=lambda k: (order.get(k, len(order)), k))
    shown = [k for k in _MAIN_CONFIG_FIELDS if k in all_fields]
    # d and seed are the grid; augment and bias are what the variant name says
    rest = [k for k in all_fields if k not in shown and k not in ("d", "seed", "augment", "bias")]
    varying = [k for k in rest if len({json.dumps(r["config"].get(k), sort_keys=True) for r in records}) > 1]
    shown += varying
    constant = [k for k in rest if k not in varying]
    config_rows = []
    for (d, v), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], _variant_sort_key(kv[0][1]))):
        row = {"d": str(d), "variant": v, "seeds": ", ".join(str(r["config"].get("seed")) for r in rs)}
        for k in shown:
            vals = list(dict.fromkeys(_fmt(r["config"].get(k)) for r in rs))
            row[k] = " / ".join(vals)  # differing values inside a group (overrides) stay visible
        config_rows.append(row)
    config = pd.DataFrame(config_rows, columns=["d", "variant", "seeds", *shown])
    shared: list[Span] = []
    if constant and records:
        shared = [_t("Fields equal in every run: ")]
        for i, k in enumerate(constant):
            shared.append(_c(f"{k}={_fmt(records[0]['config'].get(k))}"))
            shared.append(_t(", " if i < len(constant) - 1 else "."))
    time_rows = []
    for r in records:
        cfg = r["config"]
        steps = cfg.get("steps")
        secs = r.get("seconds")
        per_step = (1000.0 * secs / steps) if (_finite(secs) and _finite(steps) and steps) else None
        status = str(r.get("status", "ok"))
        if r.get("error"):
            status += f": {r['error']}"
        time_rows.append({"d": str(cfg.get("d")), "variant": _variant_of(r), "seed": _fmt(cfg.get("seed")),
                          "steps": _fmt(steps), "time": _fmt_seconds(secs),
                          "ms per step": _fmt(per_step), "status": status, "record key": str(r.get("key", ""))[:12]})
    times = pd.DataFrame(time_rows, columns=["d", "variant", "seed", "steps", "time", "ms per step", "status",
                                             "record key"])
    return config, shared, times


# ------------------------------------------------------------------------------------------------ content


def _header_blocks(claims_doc: dict, records: list[dict], regenerate_from: Path | None) -> list[Any]:
    grid = claims_doc.get("grid") or {}
    started = claims_doc.get("started")
    rows = [
        ("Command", str(claims_doc.get("command") or "n/a")),
        ("fdcheck version", str(claims_doc.get("fdcheck_version") or "n/a")),
        ("Backend", str(claims_doc.get("backend") or "n/a")),
        ("Grid: d", ", ".join(str(d) for d in grid.get("d") or []) or "n/a"),
        ("Grid: seeds", ", ".join(str(s) for s in grid.get("seeds") or []) or "n/a"),
        ("Grid: variants", ", ".join(str(v) for v in grid.get("variants") or []) or "n/a"),
        ("Quick grid", str(grid.get("quick", "n/a"))),
        ("Date", str(started or "n/a")),
        ("Total time", _fmt_seconds(claims_doc.get("seconds"))),
        ("Compute time of the runs (one core each)", _fmt_seconds(claims_doc.get("compute_seconds"))),
        ("Runs in the store", str(len(records))),
        ("Report written by", f"fdcheck {__version__}"),
    ]
    blocks: list[Any] = [Heading(1, [_t("fdcheck claim-verification report")])]
    regen = [_t("Produced by "), _c(claims_doc.get("command") or "fdcheck verify")]
    if regenerate_from is not None:
        regen += [_t("; rewrite this report from the stored results with "),
                  _c(f"fdcheck report --from {regenerate_from}")]
    blocks.append(Para(regen + [_t(".")]))
    blocks.append(Para([_t("Wen & Li (ICML 2021), “Toward Understanding the Feature Learning Process of "
                           "Self-supervised Contrastive Learning”: each claim of the paper, measured on the sparse "
                           "coding model x = Mz + ξ it is stated for.")]))
    blocks.append(Table(pd.DataFrame(rows, columns=["Run", "Value"])))
    return blocks


def _summary_spans(claims_doc: dict) -> list[Span]:
    kinds = [verdict_label(c)[1] for c in claims_doc.get("claims") or []]
    count = {k: kinds.count(k) for k in ("pass", "expected-fail", "fail", "unexpected-pass", "inconclusive")}
    ok = count["pass"] + count["expected-fail"]
    spans = [_b(f"{len(kinds)} claims: "),
             _t(f"{count['pass']} pass, {count['expected-fail']} fail as expected, {count['fail']} fail, "
                f"{count['unexpected-pass']} pass although expected to fail, {count['inconclusive']} inconclusive. ")]
    spans.append(_t("Every claim holds or fails as declared." if ok == len(kinds)
                    else "Not every claim holds or fails as declared (fdcheck verify exits 1)."))
    return spans


def _claim_blocks(claim: dict, figure: FigureOut) -> list[Any]:
    cid = str(claim.get("id", "?"))
    label, _ = verdict_label(claim)
    blocks: list[Any] = [Heading(3, [_c(cid), _t(f" — {claim.get('paper_ref', '')}: {label}")],
                                 anchor=f"claim-{_slug(cid)}")]
    blocks.append(Para([_b("Statement. "), _t(claim.get("statement", ""))]))
    comparison = _COMPARISON_SYMBOL.get(str(claim.get("comparison", "")), str(claim.get("comparison", "")))
    measured = [_b("Measured. "), _c(claim.get("quantity", ""))]
    if claim.get("variant"):
        measured += [_t(" on the "), _c(claim["variant"]), _t(f" runs ({_variant_label(str(claim['variant']))})")]
    measured += [_t(f"; the claim needs it {comparison} ")]
    measured += [_c(claim["threshold"])] if claim.get("threshold") not in (None, "") else [_t("the threshold")]
    blocks.append(Para(measured + [_t(".")]))
    if claim.get("rationale"):
        blocks.append(Para([_b("Why this threshold. "), _t(claim["rationale"])]))
    if claim.get("reason"):
        blocks.append(Para([_b("Why this verdict. "), _t(claim["reason"])]))
    if claim.get("expected_fail"):
        blocks.append(Para([_b("Declared expected to fail: "),
                            _t("this claim is not expected to hold at the measured d (see the reason above); "
                               "a fail here is recorded, not hidden.")]))
    trend = claim.get("trend") or {}
    blocks.append(Para([_b("Trend in d. "), _t(_trend_cell(trend))]))
    blocks += _figure_blocks(figure)
    per_d = _trend_table(claim)
    if len(per_d):
        blocks.append(Para([_t("Per d (the variant the verdict is about):")], emphasis=True))
        blocks.append(Table(per_d))
    ev = _evidence_table(claim)
    if len(ev):
        blocks.append(Para([_t("Evidence, one row per run:")], emphasis=True))
        blocks.append(Table(ev))
    else:
        blocks.append(Para([_t("No evidence was recorded for this claim.")]))
    return blocks


def _figure_blocks(figure: FigureOut) -> list[Any]:
    blocks: list[Any] = []
    if figure.png is not None:
        blocks.append(figure)
    if figure.skipped:
        blocks.append(Para([_b("Left out of this figure: " if figure.png is not None else "Figure not drawn: "),
                            _t("; ".join(figure.skipped) + ".")]))
    return blocks


def _reconstructed_blocks(claims_doc: dict) -> list[Any]:
    blocks: list[Any] = [Heading(2, [_t("What was reconstructed where the seed is garbled")], anchor="reconstructed")]
    blocks.append(Para([_t("The paper's text that fdcheck starts from lost parts of some formulas. Where a claim "
                           "depends on such a part, this is how it was read:")]))
    items = [[_c(c.get("id", "?")), _t(f" — {c.get('paper_ref', '')}: {c['reconstructed']}")]
             for c in claims_doc.get("claims") or [] if c.get("reconstructed")]
    blocks.append(Bullets(items) if items else Para([_t("No claim needed a reconstruction.")]))
    return blocks


def _build_blocks(claims_doc: dict, records: list[dict], store_dir: Path | None,
                  regenerate_from: Path | None) -> tuple[list[Any], list[FigureOut]]:
    claims = claims_doc.get("claims") or []
    figures: list[FigureOut] = []
    blocks = _header_blocks(claims_doc, records, regenerate_from)

    blocks.append(Heading(2, [_t("Verdicts")], anchor="verdicts"))
    blocks.append(Para(_summary_spans(claims_doc)))
    table, kinds = verdict_table(claims_doc)
    blocks.append(Para([_t("Each d column: the mean over seeds (min–max over seeds) and the threshold the claim "
                           "needs; ✓: it holds there for every seed, ✗: for none. A claim marked “fail (expected "
                           "fail)” is declared to fail at these d (its section says why) and fails as declared.")],
                       emphasis=True))
    blocks.append(Table(table, verdict_column="Verdict", verdict_kinds=kinds))

    blocks.append(Heading(2, [_t("Claims")], anchor="claims"))
    for claim in claims:
        fig = _claim_figure(claim, records)
        figures.append(fig)
        blocks += _claim_blocks(claim, fig)

    blocks.append(Heading(2, [_t("The learned features: counterparts of the paper's figures")], anchor="features"))
    runs, d, seed, notes = _figure_runs(records, store_dir, VARIANT_ORDER)
    # none_schedule is shown when the grid has it; its absence is worth a note only when the grid asked for it
    wanted = {"mask", "none", "supervised", *((claims_doc.get("grid") or {}).get("variants") or [])}
    notes = [n for n in notes if not any(f"'{v}'" in n for v in VARIANT_ORDER if v not in wanted)]
    # Figure 3 compares contrastive representations with and without augmentation; supervised is not part of it
    d_runs = {v: r for v, r in runs.items() if v != "supervised"}
    d_notes = [n for n in notes if "'supervised'" not in n]
    for title, fig in (
        ("Neurons against atoms (Figure 1)", _weights_figure(runs, d, seed, notes)),
        ("Activation sparsity (Figure 4)", _sparsity_figure(runs, d, seed, notes)),
        ("Representations of one-atom samples (Figure 3)", _projection_figure(d_runs, d, seed, d_notes)),
        ("The gradient split between span(M) and M⊥ (Section 4)", _gradient_figure(records)),
    ):
        figures.append(fig)
        blocks.append(Heading(3, [_t(title)], anchor=_slug(title)))
        blocks += _figure_blocks(fig)

    blocks += _reconstructed_blocks(claims_doc)

    blocks.append(Heading(2, [_t("The runs")], anchor="runs"))
    if records:
        config, shared, times = _runs_tables(records)
        total = sum(float(r["seconds"]) for r in records if _finite(r.get("seconds")))
        blocks.append(Para([_t(f"{len(records)} runs, {_fmt_seconds(total)} of training and measurement in all. "
                               "Configuration per d and variant:")]))
        blocks.append(Table(config))
        if shared:
            blocks.append(Para(shared))
        blocks.append(Para([_t("Time per run (training and measurement, as recorded in the store):")],
                           emphasis=True))
        blocks.append(Table(times))
    else:
        blocks.append(Para([_t("No run record was found in the results store, so the figures of the learned "
                               "features and this section are empty.")]))
    return blocks, figures


# ------------------------------------------------------------------------------------------------ Markdown


def _md_escape(text: str) -> str:
    """Escape what GitHub-flavoured Markdown would read as markup in prose taken from claims and records."""
    text = str(text).replace("\r", "")
    text = re.sub(r"([\\`*|<>\[\]$])", r"\\\1", text)
    return re.sub(r"\s*\n\s*", " ", text)


def _md_spans(spans: Sequence[Span]) -> str:
    parts = []
    for s in spans:
        if s.kind == "code":
            fence = "``" if "`" in s.text else "`"
            pad = " " if "`" in s.text else ""
            parts.append(f"{fence}{pad}{s.text.replace(chr(10), ' ')}{pad}{fence}")
        elif s.kind == "bold":
            parts.append(f"**{_md_escape(s.text).strip()}**" + (" " if s.text.endswith(" ") else ""))
        else:
            parts.append(_md_escape(s.text))
    return "".join(parts)


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub pipe table; cells are escaped (``|`` inside a cell would otherwise split it).

    ``DataFrame.to_markdown`` (via tabulate) does not escape ``|``, and statements such as ``|<w_i, M_j>|`` have
    them, hence this small renderer.
    """
    header = "| " + " | ".join(_md_escape(c) for c in frame.columns) + " |"
    sep = "| " + " | ".join("---" for _ in frame.columns) + " |"
    lines = [header, sep]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_md_escape(v) for v in row) + " |")
    return "\n".join(lines)


def render_markdown(blocks: Sequence[Any]) -> str:
    """The report as GitHub-flavoured Markdown; figures are relative links into ``figures/``."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append("#" * b.level + " " + _md_spans(b.spans))
        elif isinstance(b, Para):
            text = _md_spans(b.spans)
            out.append(f"_{text.strip()}_" if b.emphasis else text)
        elif isinstance(b, Bullets):
            out.append("\n".join("- " + _md_spans(item) for item in b.items))
        elif isinstance(b, Table):
            out.append(markdown_table(b.frame))
        elif isinstance(b, FigureOut):
            out.append(f"![{_md_escape(b.alt)}](figures/{b.name})\n\n_{_md_escape(b.caption)}_")
    return "\n\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------ HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       max-width: 1180px; margin: 2em auto; padding: 0 1.2em; color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.7em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.35em; border-bottom: 1px solid #e5e5e5; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.1em; margin-top: 1.6em; }
code { background: #f3f3f3; padding: 0 .25em; border-radius: 3px; font-size: 92%; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 88%; }
th, td { border: 1px solid #d5d5d5; padding: .3em .55em; vertical-align: top; text-align: left; }
th { background: #f5f6f8; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 90%; color: #444; margin-top: .3em; }
.aside { font-style: italic; color: #444; }
.badge { display: inline-block; padding: .05em .45em; border-radius: .8em; font-weight: 600; white-space: nowrap; }
.pass { background: #dff3e2; color: #135c22; }
.fail { background: #fbe0e0; color: #8a1515; }
.expected-fail { background: #e8eaf6; color: #283593; }
.unexpected-pass { background: #fff0d6; color: #7a4b00; }
.inconclusive { background: #fff6cc; color: #6b5800; }
"""


def _html_spans(spans: Sequence[Span]) -> str:
    parts = []
    for s in spans:
        text = html.escape(s.text)
        parts.append({"code": f"<code>{text}</code>", "bold": f"<strong>{text}</strong>"}.get(s.kind, text))
    return "".join(parts)


def _html_table(t: Table) -> str:
    frame = t.frame.map(lambda v: html.escape(str(v)))
    if t.verdict_column and t.verdict_kinds is not None and t.verdict_column in frame.columns:
        frame[t.verdict_column] = [f'<span class="badge {k}">{v}</span>'
                                   for v, k in zip(frame[t.verdict_column], t.verdict_kinds)]
    frame.columns = [html.escape(str(c)) for c in frame.columns]
    return frame.to_html(index=False, escape=False, border=0, na_rep="n/a")


def render_html(blocks: Sequence[Any], title: str = "fdcheck claim-verification report") -> str:
    """The report as one self-contained HTML page: inline CSS, figures as base64 data URIs, no fetch allowed."""
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            body.append(f"<h{b.level}{anchor}>{_html_spans(b.spans)}</h{b.level}>")
        elif isinstance(b, Para):
            cls = ' class="aside"' if b.emphasis else ""
            body.append(f"<p{cls}>{_html_spans(b.spans)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_html_spans(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            body.append(_html_table(b))
        elif isinstance(b, FigureOut) and b.png is not None:
            data = base64.b64encode(b.png).decode("ascii")
            body.append(f'<figure id="fig-{html.escape(b.name)}"><img src="data:image/png;base64,{data}" '
                        f'alt="{html.escape(b.alt)}" data-file="figures/{html.escape(b.name)}">'
                        f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


# ------------------------------------------------------------------------------------------------ entry point


def write_report(out_dir: str | os.PathLike, claims_doc: dict, records: list[dict], *,
                 store_dir: str | os.PathLike | None = None,
                 regenerate_from: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``out_dir``.

    Figures are written first and the two pages last, each file atomically, so a crash leaves either the previous
    report or the new one, never half a page. PNGs in ``figures/`` that the new report no longer uses are removed.

    Args:
        out_dir: the output directory (created if missing).
        claims_doc: the ``claims.json`` document (DESIGN.md; entries as :func:`fdcheck.claims.evaluate_claim`).
        records: the run records of the results store (record format: :mod:`fdcheck.sweep`); may be empty.
        store_dir: the store directory, against which each record's ``arrays`` file name is resolved.
        regenerate_from: the directory named in the report's "rewrite with ``fdcheck report --from``" line
            (defaults to ``out_dir``).

    Returns:
        ``{"markdown": path, "html": path, "figures": dir, "figures/<name>.png": path, ...}``.
    """
    if not isinstance(claims_doc, dict) or not isinstance(claims_doc.get("claims"), list):
        raise ValueError("claims_doc must be a dict with a 'claims' list (the claims.json document); "
                         f"got {type(claims_doc).__name__}")
    if not isinstance(records, list) or not all(isinstance(r, dict) and isinstance(r.get("config"), dict)
                                                 for r in records):
        raise ValueError("records must be a list of run records, each a dict with a 'config' dict")
    out = Path(out_dir)
    store = Path(store_dir) if store_dir is not None else None
    # one canonical order, so the same runs give the same report however they were listed
    records = sorted(records, key=lambda r: (_num(r["config"].get("d")), _variant_sort_key(_variant_of(r)),
                                             _num(r["config"].get("seed")), str(r.get("key", ""))))
    # Everything is rendered in memory before the first file is touched: a failure while drawing or rendering
    # leaves the previous report as it was.
    blocks, figures = _build_blocks(claims_doc, records, store, Path(regenerate_from or out))
    md_text = render_markdown(blocks).encode("utf-8")
    html_text = render_html(blocks).encode("utf-8")
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"figures": fig_dir}
    for fig in figures:
        if fig.png is not None:
            path = fig_dir / fig.name
            atomic_write_bytes(path, fig.png)
            paths[f"figures/{fig.name}"] = path
    for stale in fig_dir.glob("*.png"):
        if f"figures/{stale.name}" not in paths:
            stale.unlink()
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_bytes(md_path, md_text)
    atomic_write_bytes(html_path, html_text)
    paths["markdown"] = md_path
    paths["html"] = html_path
    return paths
