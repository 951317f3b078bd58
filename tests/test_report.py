"""The claim-verification report (fdcheck.report) against small sweeps in a real results store.

Every store is written by :func:`fdcheck.sweep.run_sweep` and every claims document by
:func:`fdcheck.claims.claims_document`, so the report reads exactly what ``fdcheck verify`` hands it. The main
fixture is a tiny REAL sweep (``execute_run``: training and ``measure_all``) at d = 8 and 12, one seed, 50 steps,
every variant. The tests of edge cases (a missing variant or metric, unreadable arrays, a failed render) use
``fabricated_run`` instead: it follows the seeds contract (the real dictionary ``M`` and initialisation ``W0``) and
builds trained-looking weights by hand, with the metrics the claims read, so that they stay fast and control what
is missing.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from fdcheck import report
from fdcheck.backend import Random
from fdcheck.claims import CLAIMS, claims_document
from fdcheck.config import ModelConfig
from fdcheck.data import SparseCodingModel
from fdcheck.network import features, init_weights
from fdcheck.sweep import ResultsStore, RunSpec, execute_run, run_sweep

DS = (8, 12)
SEEDS = (0,)  # one seed keeps the real sweep at about 8 s; the seeds' spread is covered by the fabricated sweeps
VARIANTS = ("mask", "none", "none_schedule", "supervised")
STEPS = 50


# ------------------------------------------------------------------------------------------------ the fixture


def fabricated_run(config: ModelConfig) -> dict:
    """A stand-in for ``sweep.execute_run``: real ``M`` and ``W0`` (seeds contract), hand-built trained weights.

    mask: each neuron is one atom plus a little of its initialisation, with a bias; none: the initialisation plus
    dense noise directions, ``b = 0``; supervised: two atoms per neuron. Metrics are computed where that is one line,
    otherwise drawn from the run's eval stream in plausible ranges (this is test data, not a measurement).
    """
    xp = np
    dict_rng, init_rng, _train_rng, eval_rng = Random(config.seed, xp).spawn(4)
    model = SparseCodingModel.from_config(config, dict_rng)
    M = np.asarray(model.M, dtype=np.float64)
    W0, _ = init_weights(config.m, config.d1, config.init_std, init_rng, dtype="float64")
    atoms = np.arange(config.m) % config.d
    signs = np.where(np.arange(config.m) % 2 == 0, 1.0, -1.0)
    if config.augment == "mask":
        W = 0.9 * signs[:, None] * M.T[atoms] + 0.3 * W0
        b = 0.45 * np.linalg.norm(W, axis=1)
    elif config.augment == "supervised":
        W = 0.7 * M.T[atoms] + 0.5 * M.T[(atoms + 1) % config.d] + 0.3 * W0
        b = 0.3 * np.linalg.norm(W, axis=1)
    else:
        W = W0 + 0.05 * np.asarray(eval_rng.normal(W0.shape))
        b = np.zeros(config.m)
    norms2 = np.sum(W**2, axis=1)
    alpha2 = (W @ M) ** 2
    sample = model.sample(400, eval_rng)
    f = features(W, b, sample.x)
    u = np.asarray(eval_rng.uniform((40,)))
    mask = config.augment != "none"
    metrics = {
        "data_active_proj_q01": 0.55 + 0.01 * config.d + 0.01 * u[0],
        "data_noise_proj_max": 0.8 + 0.1 * u[1],
        "data_noise_proj_bound": 1.2,
        "data_noise_cos_max": 0.2 + 0.05 * u[2],
        "data_noise_cos_bound": 0.3,
        "data_energy_ratio": 20.0 + u[3],
        "view_corr_atoms_mask": 0.25 + 0.02 * u[4],
        "view_corr_perp_mask": 0.02 * (u[5] - 0.5),
        "view_corr_atoms_none": 1.0,
        "view_corr_perp_none": 1.0,
        "grad_perp_share_mask": 0.2 + 0.05 * u[6],
        "grad_perp_share_none": 0.9 + 0.05 * u[7],
        "grad_growth_span_mask": 0.05 + 0.01 * u[8],
        "grad_growth_perp_mask": -0.01 - 0.005 * u[9],
        "grad_growth_span_none": 0.2 + 0.01 * u[10],
        "grad_growth_perp_none": 0.15 + 0.01 * u[11],
        "threshold_decoding_acc": 0.85 + 0.01 * config.d * u[12],
        "cos_fx_fxi": (0.4 if mask else 0.9) + 0.02 * u[13],
        "cos_fx_fMz": (0.9 if mask else 0.5) + 0.02 * u[14],
        "rel_dist_fx_fMz": (0.3 if mask else 1.5) + 0.02 * u[15],
        "frac_fMz_nonzero": 0.95 + 0.01 * u[16],
        "span_energy": float(np.mean(alpha2.sum(axis=1) / norms2)),
        "top_atom_share": float(np.mean(alpha2.max(axis=1) / norms2)),
        "top3_atom_share": float(np.mean(np.sort(alpha2, axis=1)[:, -3:].sum(axis=1) / norms2)),
        "n_atoms_mean": 1.0 if mask else 0.0,
        "atom_coverage": 1.0 if config.augment == "mask" else 0.0,
        "max_atom_neuron_frac": 0.1 + 0.01 * u[17],
        "activation_density": float(np.mean(f != 0)),
        "dead_neuron_frac": 0.0,
        "weight_move_rel": 1.5 + u[18],
        "weight_move_perp_share": (0.1 if mask else 0.9) + 0.02 * u[19],
        "centroid_acc": (0.9 if mask else 0.3) + 0.02 * u[20],
        "peer_bestcos_median": (0.9 if mask else 0.2) + 0.02 * u[21],
        "probe_reg_mse_features": (0.4 if mask else 0.7) + 0.02 * u[22],
        "probe_reg_mse_raw": 0.85 + 0.02 * u[23],
        "probe_cls_acc_features": (0.93 if mask else 0.78) + 0.01 * u[24],
        "probe_cls_acc_raw": 0.72 + 0.01 * u[25],
    }
    return {"metrics": {k: float(v) for k, v in metrics.items()},
            "history": [{"step": 0, "loss": 1.0}, {"step": config.steps, "loss": 0.5}],
            "seconds": 0.01 * config.d,
            "arrays": {"W": W.astype(np.float32), "b": b.astype(np.float32), "W0": W0.astype(np.float32),
                       "M": M.astype(np.float32)}}


# A few claims for the tests that only need some report (each claim figure costs a fraction of a second).
FEW_CLAIMS = tuple(c for c in CLAIMS if c.id in ("thm3.2-dense-dominance", "fig4-sparser-activations",
                                                  "sec4-threshold-decoding"))


def make_sweep(root: Path, variants=VARIANTS, ds=DS, seeds=(0, 1), claims=CLAIMS,
               run_fn=fabricated_run) -> tuple[dict, list[dict], Path]:
    """A sweep into a real results store under ``root/store`` and its claims document, as fdcheck verify writes."""
    store = ResultsStore(root / "store")
    specs = [RunSpec(d=d, seed=s, variant=v, overrides=(("steps", STEPS),)) for d in ds for s in seeds
             for v in variants]
    records = run_sweep(specs, store, executor="local", workers=1, progress=False, run_fn=run_fn)
    grid = {"d": list(ds), "seeds": list(seeds), "variants": list(variants), "quick": True}
    doc = claims_document(records, grid=grid, deviations={}, claims=claims, backend="numpy",
                          command="fdcheck verify --quick", started="2024-01-01T00:00:00+00:00", seconds=12.5,
                          store="store", store_version=store.version)
    (root / "claims.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return doc, records, root / "store"


def _reported(root: Path, doc: dict, records: list[dict], store: Path) -> dict:
    paths = report.write_report(root, doc, records, store_dir=store)
    return {"root": root, "doc": doc, "records": records, "store": store, "paths": paths,
            "md": paths["markdown"].read_text(encoding="utf-8"),
            "html": paths["html"].read_text(encoding="utf-8")}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """The report of a tiny real sweep: every claim of the registry, d = 8 and 12, one seed, 50 steps."""
    root = tmp_path_factory.mktemp("verify")
    return _reported(root, *make_sweep(root, seeds=SEEDS, run_fn=execute_run))


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    """A fabricated sweep with two seeds, so that the verdict table shows a min–max spread."""
    root = tmp_path_factory.mktemp("two-seeds")
    return _reported(root, *make_sweep(root, variants=("mask", "none"), seeds=(0, 1), claims=FEW_CLAIMS))


# -------------------------------------------------------------------------------------------------- helpers


def split_row(line: str) -> list[str]:
    """The cells of a Markdown pipe-table row, honouring ``\\|`` escapes."""
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [re.sub(r"\\(.)", r"\1", c.strip()) for c in cells]


def markdown_tables(md: str) -> list[list[list[str]]]:
    tables, current = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            current.append(split_row(line))
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def verdict_rows(md: str) -> tuple[list[str], list[list[str]]]:
    for table in markdown_tables(md):
        if table[0][:4] == ["Claim", "Paper", "Statement", "Verdict"]:
            return table[0], table[2:]
    raise AssertionError("no verdict table (header Claim | Paper | Statement | Verdict) in report.md")


class Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.mismatched: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "img", "br", "hr", "link", "input"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.mismatched.append(tag)


# ---------------------------------------------------------------------------------------------------- tests


def test_every_claim_appears_with_its_verdict(sweep):
    header, rows = verdict_rows(sweep["md"])
    claims = sweep["doc"]["claims"]
    assert [r[0] for r in rows] == [c["id"] for c in claims]
    for row, claim in zip(rows, claims):
        assert row[header.index("Verdict")] == report.verdict_label(claim)[0], claim["id"]
        assert f'id="claim-{report._slug(claim["id"])}"' in sweep["html"], claim["id"]
        assert re.search(rf"^### `{re.escape(claim['id'])}` ", sweep["md"], re.M), claim["id"]
    # the fixture's claims must not all share one verdict, or this test could not tell verdicts apart
    assert len({c["verdict"] for c in claims}) >= 2


@pytest.mark.parametrize("source", ["sweep", "two_seeds"])
def test_markdown_verdict_table_matches_claims_json(source, request):
    sweep = request.getfixturevalue(source)
    doc = json.loads((sweep["root"] / "claims.json").read_text(encoding="utf-8"))
    header, rows = verdict_rows(sweep["md"])
    assert [f"d = {d}" for d in DS] == [h for h in header if h.startswith("d = ")]
    assert len(rows) == len(doc["claims"])
    spread = 0
    for row, claim in zip(rows, doc["claims"]):
        cells = dict(zip(header, row))
        assert cells["Paper"] == claim["paper_ref"]
        assert cells["Statement"] == claim["statement"]
        assert cells["Quantity"] == claim["quantity"]
        per_d = {r["d"]: r for r in claim["trend"]["per_d"]}
        for d in DS:
            cell = cells[f"d = {d}"]
            if d not in per_d:
                assert cell == "–"
                continue
            r = per_d[d]
            assert cell.startswith(f"{r['mean']:.3g}"), (claim["id"], d, cell)
            if f"{r['min']:.3g}" != f"{r['max']:.3g}":
                assert f"({r['min']:.3g}–{r['max']:.3g})" in cell
                spread += 1
            assert cell.split("need ")[1].split()[1] == f"{r['threshold']:.3g}"
        trend = claim["trend"]
        if trend["expected"] == "none":
            assert cells["Trend in d"] == f"none claimed (observed {trend['observed']})"
        else:
            mark = {True: "✓", False: "✗", None: "–"}[trend["holds"]]
            assert cells["Trend in d"] == f"expected {trend['expected']}, observed {trend['observed']} {mark}"
    assert spread > 0 or source == "sweep", "the two-seed sweep must show a min–max spread"


def test_every_figure_exists_is_referenced_and_embedded(sweep):
    md, page, root = sweep["md"], sweep["html"], sweep["root"]
    files = sorted((root / "figures").glob("*.png"))
    expected = {f"claim_{report._slug(c['id'])}.png" for c in sweep["doc"]["claims"] if c["evidence"]}
    expected |= {"weights_neuron_atom.png", "activation_sparsity.png", "representation_projection.png",
                 "gradient_split.png"}
    assert {f.name for f in files} == expected
    linked = re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", md)
    assert sorted(linked) == sorted(f"figures/{f.name}" for f in files)
    embedded = dict(re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"[^>]*data-file="([^"]+)"', page))
    by_file = {name: data for data, name in embedded.items()}
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f.name
        assert base64.b64decode(by_file[f"figures/{f.name}"]) == f.read_bytes(), f.name
    assert set(sweep["paths"]) >= {"markdown", "html", "figures", *(f"figures/{f.name}" for f in files)}


def test_html_parses_and_needs_no_network(sweep):
    page = sweep["html"]
    parser = Collector()
    parser.feed(page)
    parser.close()
    assert not parser.mismatched and not parser.stack, (parser.mismatched, parser.stack)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for tag, attrs in parser.tags:
        for name in ("src", "href", "srcset", "poster", "data", "action"):
            value = attrs.get(name)
            if value is not None and name == "src":
                assert value.startswith("data:image/png;base64,"), (tag, value[:60])
            elif value is not None:
                assert value.startswith("#"), (tag, name, value)
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|url\(|@import", page, re.I)
    csp = [a["content"] for t, a in parser.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == [report.CSP] and "default-src 'none'" in report.CSP


def test_report_contents(sweep):
    md, doc = sweep["md"], sweep["doc"]
    assert md.startswith("# fdcheck claim-verification report")
    for text in ("fdcheck verify --quick", f"fdcheck report --from {sweep['root']}", "2024-01-01T00:00:00+00:00",
                 "12.5 s", "## What was reconstructed where the seed is garbled", "## The runs"):
        assert text in md, text
    reconstructed = [c for c in doc["claims"] if c["reconstructed"]]
    assert reconstructed, "the registry has reconstructed claims; the fixture must carry them"
    section = md.split("## What was reconstructed")[1].split("\n## ")[0]
    for c in reconstructed:
        assert f"`{c['id']}`" in section
    runs = md.split("## The runs")[1]
    time_table = [t for t in markdown_tables(runs) if "ms per step" in t[0]][0]
    assert len(time_table) - 2 == len(sweep["records"])
    for row in time_table[2:]:
        assert row[time_table[0].index("steps")] == str(STEPS)
    features = md.split("## The learned features")[1].split("\n## ")[0]
    assert "Left out of this figure" not in features and "Figure not drawn" not in features


def test_report_from_dir_rewrites_the_same_report(two_seeds):
    root = two_seeds["root"]
    before = {p: p.read_bytes() for p in [root / "report.md", root / "report.html", *(root / "figures").glob("*")]}
    paths = report.report_from_dir(root)
    assert paths["markdown"] == root / "report.md"
    after = {p: p.read_bytes() for p in [root / "report.md", root / "report.html", *(root / "figures").glob("*")]}
    assert after == before  # same inputs, byte-identical report (the PNGs carry no timestamp)


def test_report_from_dir_shows_only_the_runs_claims_json_names(tmp_path):
    """A store holding a run the verification did not use gives the same report as a store without it."""
    doc, records, store = make_sweep(tmp_path, variants=("mask", "none"), ds=(8,), seeds=(0,), claims=FEW_CLAIMS[:1])
    doc = dict(doc, runs=[r["key"] for r in records])
    (tmp_path / "claims.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")

    def files() -> dict[str, bytes]:
        return {str(p.relative_to(tmp_path)): p.read_bytes()
                for p in [tmp_path / "report.md", tmp_path / "report.html", *(tmp_path / "figures").glob("*")]}

    report.report_from_dir(tmp_path)
    before = files()
    # Another run in the same store (a later sweep, another grid): a variant the report would otherwise draw.
    extra = run_sweep([RunSpec(d=8, seed=0, variant="supervised", overrides=(("steps", STEPS),))], ResultsStore(store),
                      executor="local", workers=1, progress=False, run_fn=fabricated_run)
    assert extra[0]["status"] == "ok" and extra[0]["key"] not in doc["runs"]
    report.report_from_dir(tmp_path)
    assert files() == before
    # The control: an older claims.json without "runs" reads every record, and then the extra run does show.
    (tmp_path / "claims.json").write_text(json.dumps({k: v for k, v in doc.items() if k != "runs"}), encoding="utf-8")
    report.report_from_dir(tmp_path)
    shown = f"| {extra[0]['key'][:12]} |"  # the run-time table names every run by its record key
    assert files() != before and shown in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert shown not in before["report.md"].decode("utf-8")
    assert all(f"| {k[:12]} |" in before["report.md"].decode("utf-8") for k in doc["runs"])
    (tmp_path / "claims.json").write_text(json.dumps(dict(doc, runs="all")), encoding="utf-8")
    with pytest.raises(ValueError, match="'runs' must be a list of record keys"):
        report.report_from_dir(tmp_path)


def test_missing_variant_and_metric_are_left_out_and_said(tmp_path):
    doc, records, store = make_sweep(tmp_path, variants=("mask", "none"), ds=(8,), seeds=(0,), claims=FEW_CLAIMS[:1])
    for r in records:
        r["metrics"] = {k: v for k, v in r["metrics"].items() if not k.startswith("grad_")}
    paths = report.write_report(tmp_path / "out", doc, records, store_dir=store)
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "no run of variant 'supervised'" in md
    assert "metric grad_perp_share_mask is in no record" in md
    assert "Figure not drawn" in md  # the gradient-split figure
    assert not (tmp_path / "out" / "figures" / "gradient_split.png").exists()
    assert (tmp_path / "out" / "figures" / "weights_neuron_atom.png").exists()


def test_unreadable_arrays_are_reported_not_fatal(tmp_path):
    doc, records, store = make_sweep(tmp_path, variants=("mask", "none"), ds=(8,), seeds=(0,), claims=FEW_CLAIMS[:1])
    (store / records[0]["arrays"]).write_bytes(b"not an npz")
    paths = report.write_report(tmp_path / "out", doc, records, store_dir=store)
    md = paths["markdown"].read_text(encoding="utf-8")
    assert f"the run of variant '{records[0]['variant']}' at d = 8, seed 0 is left out" in md


def test_a_failed_render_leaves_the_previous_report(two_seeds, tmp_path, monkeypatch):
    doc, records, store = two_seeds["doc"], two_seeds["records"], two_seeds["store"]
    out = tmp_path / "out"
    shutil.copytree(two_seeds["root"], out, ignore=shutil.ignore_patterns("store", "claims.json"))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = {"n": 0}
    real_png = report._png

    def flaky_png(fig):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk on fire")
        return real_png(fig)

    monkeypatch.setattr(report, "_png", flaky_png)
    changed = dict(doc, command="fdcheck verify --changed")
    with pytest.raises(RuntimeError, match="disk on fire"):
        report.write_report(out, changed, records, store_dir=store)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing half-written, no temporary file left behind


def test_bad_input_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match="claims_doc"):
        report.write_report(tmp_path, {"grid": {}}, [])
    with pytest.raises(ValueError, match="records"):
        report.write_report(tmp_path, {"claims": []}, [{"metrics": {}}])
    with pytest.raises(ValueError, match="claims.json"):
        report.report_from_dir(tmp_path)
    (tmp_path / "claims.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="not valid JSON"):
        report.report_from_dir(tmp_path)


def test_verdict_labels_mark_expected_fails():
    assert report.verdict_label({"verdict": "pass", "expected_fail": False}) == ("✓ pass", "pass")
    assert report.verdict_label({"verdict": "fail", "expected_fail": False}) == ("✗ fail", "fail")
    label, kind = report.verdict_label({"verdict": "fail", "expected_fail": True})
    assert kind == "expected-fail" and "expected" in label
    label, kind = report.verdict_label({"verdict": "pass", "expected_fail": True})
    assert kind == "unexpected-pass" and "expected to fail" in label
    assert report.verdict_label({"verdict": "inconclusive", "expected_fail": False})[1] == "inconclusive"


def test_markdown_table_escapes_cells():
    import pandas as pd

    frame = pd.DataFrame([{"a": "|<w_i, M_j>| is *large*", "b": "x\ny"}])
    lines = report.markdown_table(frame).splitlines()
    assert len(lines) == 3
    assert split_row(lines[2]) == ["|<w_i, M_j>| is *large*", "x y"]


def test_neuron_atom_matrix_of_pure_atoms_is_a_sorted_identity():
    rng = Random(3, np)
    M = np.linalg.qr(np.asarray(rng.normal((40, 5))))[0]
    perm = np.array([3, 0, 4, 1, 2, 3])
    W = 2.5 * M.T[perm]  # six neurons, each one atom (atom 3 twice), with a norm that must not matter
    W[1] *= -1  # the sign of a neuron must not matter either
    matrix, order = report.neuron_atom_matrix(W, M)
    assert np.argmax(matrix, axis=1).tolist() == sorted(perm.tolist())
    np.testing.assert_allclose(matrix.max(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.sort(matrix, axis=1)[:, :-1], 0.0, atol=1e-12)
    assert perm[order].tolist() == sorted(perm.tolist())


def test_activation_fractions():
    W = np.eye(4)
    b = np.full(4, 0.5)
    x = np.array([[1.0, 0, 0, 0], [1.0, 1.0, 1.0, 0.0], [0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(report.activation_fractions(W, b, x), [0.25, 0.75, 0.0])


def test_tsne_keeps_separated_clusters_apart():
    # 4 clusters along orthogonal axes (seed 0, 30 points each, spread 0.05 against distances of about 1.4):
    # in the embedding every point's nearest neighbour must share its cluster; identical rows give None.
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 30)
    f = np.eye(6)[labels] + 0.05 * rng.normal(size=(labels.size, 6))
    y = report.tsne_2d(f, seed=0)
    dist = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    assert (labels[dist.argmin(axis=1)] == labels).all()
    assert report.tsne_2d(np.ones((10, 3))) is None


def test_report_without_a_store_still_shows_every_claim(two_seeds, tmp_path):
    doc = dict(two_seeds["doc"], store="no-such-store")
    (tmp_path / "claims.json").write_text(json.dumps(doc), encoding="utf-8")
    paths = report.report_from_dir(tmp_path)
    md = paths["markdown"].read_text(encoding="utf-8")
    assert [r[0] for r in verdict_rows(md)[1]] == [c["id"] for c in doc["claims"]]
    assert "No run record was found" in md
    assert sorted(p.name for p in (tmp_path / "figures").glob("*.png")) == sorted(
        f"claim_{report._slug(c['id'])}.png" for c in doc["claims"])
