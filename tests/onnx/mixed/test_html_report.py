"""Spec 21.5: the HTML report, rendered in headless Chromium; the DOM and the pixels it shows are checked.

Skips with a reason where no Chromium is installed (``.ci/run`` does not
install it: the OS package is several hundred MB).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from monoquant_np.onnx.mixed.html_report import PALETTE, render_html
from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report
from monoquant_np.testing.browser import chromium_path, dump_dom, read_png, screenshot

from .test_budget import _feeds, _toy


@pytest.fixture(scope="module")
def report():
    model, _ = _toy()
    return quantize_model_with_report(model, bits_per_weight=5.0, calibration=_feeds())[1].to_dict()


def test_page_is_self_contained(report):
    page = render_html(report)
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count('class="bar"') == len(report["layers"])
    assert 'id="chosen"' in page and 'class="curve"' in page


def test_report_without_budget_has_no_curve(report):
    plain = {k: v for k, v in report.items() if k != "mixed"}
    page = render_html(plain)
    assert 'id="curve"' not in page and page.count('class="err"') == len(report["layers"])


needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="no Chromium installed (chromium package)")
# Chromium takes about 10 s per page on a small machine: end-to-end tests, out of the quick suite.


@needs_chromium
@pytest.mark.e2e
def test_rendered_dom_shows_every_weight_and_the_choice(report, tmp_path):
    path = tmp_path / "r.html"
    path.write_text(render_html(report))
    dom = dump_dom(path)
    bars = re.findall(r'<rect class="bar" data-name="([^"]+)" data-format="([^"]+)"[^>]*data-bytes="(\d+)"', dom)
    chosen = report["mixed"]["chosen"]
    assert {(n, f) for n, f, _ in bars} == {(r["name"], chosen[r["name"]]) for r in report["layers"]}
    assert {n: int(b) for n, _, b in bars} == {r["name"]: r["bytes_after"] for r in report["layers"]}
    m = re.search(r'<circle id="chosen"[^>]*data-bytes="(\d+)"', dom)
    assert m and int(m.group(1)) == report["mixed"]["predicted_bytes"]
    assert f"{report['totals']['bytes_after']:,}" in re.search(r'<table id="totals">.*?</table>', dom, re.S).group(0)


@needs_chromium
@pytest.mark.e2e
def test_screenshot_shows_the_format_colours_and_the_chosen_point(report, tmp_path):
    path, png = tmp_path / "r.html", tmp_path / "r.png"
    path.write_text(render_html(report))
    screenshot(path, png, size=(900, 900))
    px = read_png(png)[..., :3].reshape(-1, 3)
    shown = {report["mixed"]["chosen"][r["name"]] for r in report["layers"]}
    colours = {tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in PALETTE[:len(shown)]}
    for rgb in colours | {(0xD6, 0x27, 0x28)}:  # every format used, and the chosen point's red
        assert np.all(px == rgb, axis=1).sum() >= 20, rgb
