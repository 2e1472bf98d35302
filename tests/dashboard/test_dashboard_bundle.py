"""The committed dashboard.js is exactly what the pinned Chart.js and esbuild build."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "dni_server" / "dashboard" / "ui"
BUNDLE = ROOT / "dni_server" / "static" / "dashboard.js"


def test_bundle_has_no_inline_html_sinks():
    """Our code never writes HTML: data reaches the page only through Chart.js's canvas."""
    source = (UI / "src" / "dashboard.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source
    assert "JSON.parse(source.textContent)" in source


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_rebuilding_gives_exactly_the_committed_bundle():
    if not (UI / "node_modules" / "chart.js").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=UI, check=True,
                       capture_output=True, timeout=300)
    result = subprocess.run(["node", "build.mjs", "--check"], cwd=UI, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert BUNDLE.stat().st_size > 0
