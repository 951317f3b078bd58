"""report.html in a real headless browser: every figure decodes and nothing is fetched from the network.

Chromium loads a copy of the page with a probe script inserted at the top of ``<head>``, before the page's own
Content-Security-Policy (a ``<meta>`` policy applies only to what follows it, so the probe runs while the page's
policy still forbids every script of its own). After the ``load`` event the probe writes into the DOM, for every
``<img>``, whether it decoded (``naturalWidth``/``naturalHeight``), every resource the page requested
(``performance.getEntriesByType('resource')``: ``data:`` URIs are not network requests and do not appear, a request
blocked by the policy still does) and every policy violation (an attempted fetch). ``--dump-dom`` hands the DOM
back. A control page with an external image and a corrupt one proves that this harness sees both failures.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import struct
import os
import subprocess
from pathlib import Path

import pytest

from fdcheck import report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Under CI (.ci/run installs chromium) a missing browser is a failure, not a skip: the check must run there.
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install -y chromium; .ci/run installs it) for the headless-browser check")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--virtual-time-budget=15000"]

PROBE = """<script>(function () {
  var violations = [];
  document.addEventListener('securitypolicyviolation', function (e) {
    violations.push(e.violatedDirective + ' ' + e.blockedURI);
  });
  window.addEventListener('load', function () {
    var images = Array.prototype.map.call(document.images, function (img) {
      return {file: img.getAttribute('data-file'), complete: img.complete,
              width: img.naturalWidth, height: img.naturalHeight};
    });
    var resources = performance.getEntriesByType('resource').map(function (r) { return r.name; });
    var out = document.createElement('pre');
    out.id = 'fdcheck-probe';
    out.textContent = JSON.stringify({images: images, resources: resources, violations: violations});
    document.body.appendChild(out);
  });
})();</script>"""

# A 1x1 PNG and a control page: one external image (must be refused and show up), one corrupt data image.
PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
CONTROL = f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{report.CSP}"><title>control</title></head><body>
<img src="data:image/png;base64,{PIXEL}" data-file="good">
<img src="http://127.0.0.1:9/external.png" data-file="external">
<img src="data:image/png;base64,AAAAnotapng" data-file="corrupt">
</body></html>"""


def _load_test_report():
    """tests/test_report.py as a module (its sweep fixture builder), whatever pytest's import mode."""
    spec = importlib.util.spec_from_file_location("_fdcheck_test_report", Path(__file__).with_name("test_report.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(page: Path, tmp_path: Path) -> dict:
    """Load ``page`` (a copy with the probe inserted) in headless Chromium and return what the probe saw."""
    text = page.read_text(encoding="utf-8")
    probed = tmp_path / f"probed-{page.name}"
    head = re.search(r"<head[^>]*>", text)
    assert head, f"{page} has no <head>"
    probed.write_text(text[: head.end()] + PROBE + text[head.end():], encoding="utf-8")
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--dump-dom", probed.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    found = re.search(r'<pre id="fdcheck-probe">(.*?)</pre>', done.stdout, re.S)
    assert found, f"the probe did not report (exit {done.returncode}); stderr tail: {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path
    return struct.unpack(">II", data[16:24])


def test_the_harness_sees_an_external_fetch_and_a_broken_image(tmp_path):
    page = tmp_path / "control.html"
    page.write_text(CONTROL, encoding="utf-8")
    seen = render(page, tmp_path)
    by_file = {img["file"]: img for img in seen["images"]}
    assert by_file["good"]["width"] == 1 and by_file["good"]["height"] == 1
    assert by_file["external"]["width"] == 0 and by_file["corrupt"]["width"] == 0
    assert any("127.0.0.1" in v for v in seen["violations"]), seen
    assert any(r.startswith("http://127.0.0.1") for r in seen["resources"]), seen


def test_report_html_renders_offline_with_every_figure(tmp_path):
    fixtures = _load_test_report()
    root = tmp_path / "verify"
    doc, records, store = fixtures.make_sweep(root, variants=("mask", "none", "supervised"), ds=(8,), seeds=(0,),
                                              claims=fixtures.FEW_CLAIMS)
    paths = report.write_report(root, doc, records, store_dir=store)
    figures = sorted((root / "figures").glob("*.png"))
    assert len(figures) == len(fixtures.FEW_CLAIMS) + 4  # a figure per claim and the four feature figures

    seen = render(paths["html"], tmp_path)

    assert seen["violations"] == [], "the page tried to fetch something"
    assert seen["resources"] == [], "the page requested resources"
    decoded = {img["file"]: (img["width"], img["height"]) for img in seen["images"] if img["complete"]}
    assert len(seen["images"]) == len(figures)
    for fig in figures:
        assert decoded.get(f"figures/{fig.name}") == png_size(fig), f"{fig.name} did not decode at its own size"
