"""The built snippet and its add-on: each within its size budget, ES5 only, and exactly what
the source builds to."""

from __future__ import annotations

import gzip
import io
import re
import shutil
import subprocess

import pytest
from dni_support import BUILT, BUILT_TOUCH, SNIPPET_DIR

BUDGET_GZIP = 2500  # bytes; issue 3: dni.js loads on every page view
TOUCH_BUDGET_GZIP = 700  # bytes; issue 13: dni-touch.js, only on pages showing a swapped number
# Budgets as gzip -9c counts (the file name in the header).
CALLBACK_BUDGET_GZIP = 950  # bytes; issue 18: dni-callback.js, only on pages asking for one
BUILT_CALLBACK = BUILT.with_name("dni-callback.js")
BUDGETS = [(BUILT, BUDGET_GZIP), (BUILT_TOUCH, TOUCH_BUDGET_GZIP),
           (BUILT_CALLBACK, CALLBACK_BUDGET_GZIP)]  # as in build.mjs


def gzip_size(built) -> int:
    """The size ``gzip -9c <file>`` gives, the budget's measure: the header names the file."""
    buffer = io.BytesIO()
    with gzip.GzipFile(built.name, "wb", 9, buffer, mtime=0) as out:
        out.write(built.read_bytes())
    return len(buffer.getvalue())


def node_modules() -> None:
    """Install the pinned build tools (package-lock.json) if this checkout has none yet."""
    if not (SNIPPET_DIR / "node_modules" / "esbuild").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SNIPPET_DIR, check=True,
                       capture_output=True, timeout=300)


@pytest.mark.parametrize("built, budget", BUDGETS,
                         ids=["dni.js", "dni-touch.js", "dni-callback.js"])
def test_built_file_is_within_the_gzip_budget(built, budget):
    """The committed dni.js is at most 2,500 bytes gzipped, dni-touch.js at most 700."""
    size = gzip_size(built)
    assert size <= budget, f"{built.name} is {size} B gzipped, over the {budget} B budget"


@pytest.mark.parametrize("built", [BUILT, BUILT_TOUCH, BUILT_CALLBACK],
                         ids=["dni.js", "dni-touch.js", "dni-callback.js"])
def test_built_file_is_es5_syntax(built):
    """No arrows, let/const, template literals or classes reach the browser."""
    code = built.read_text()
    # Strings in the snippet hold no backticks or arrows, so a plain scan is exact enough;
    # the build also runs es-check (a full ES5 parse) on sources and outputs.
    assert "=>" not in code
    assert "`" not in code
    assert not re.search(r"\b(let|const|class)\s", code)
    assert code.startswith("!function(") or code.startswith("(function(")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_rebuilding_gives_exactly_the_committed_files():
    """`npm run check` rebuilds both files in memory (with the ES5 check) and matches each
    byte for byte."""
    node_modules()
    result = subprocess.run(["node", "build.mjs", "--check"], cwd=SNIPPET_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("committed build is up to date") == 3, result.stdout
