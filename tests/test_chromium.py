"""Headless Chromium helpers: a clear error without Chromium, the rendered DOM with it."""

from __future__ import annotations

import pytest

from diffill.bench import chromium


def test_missing_chromium_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(chromium.shutil, "which", lambda name: None)
    assert chromium.find_chromium() is None
    page = tmp_path / "p.html"
    page.write_text("<p>x</p>")
    with pytest.raises(chromium.ChromiumError, match="apt-get install -y chromium"):
        chromium.dump_dom(page)


@pytest.mark.skipif(chromium.find_chromium() is None,
                    reason="headless Chromium not installed (Debian: apt-get install -y chromium)")
def test_dump_dom_returns_the_parsed_page(tmp_path):
    page = tmp_path / "p.html"
    page.write_text('<p id="a">one<svg id="s" width="10" height="10"><rect width="5" height="5"/></svg>')
    dom = chromium.dump_dom(page)
    assert '<p id="a">one<svg id="s"' in dom
    assert "</body></html>" in dom  # Chromium completed the document
