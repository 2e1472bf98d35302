"""The built snippet: within its size budget, ES5 only, and exactly what the source builds to."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess

import pytest
from dni_support import BUILT, SNIPPET_DIR

BUDGET_GZIP = 2500  # bytes; issue 3


def node_modules() -> None:
    """Install the pinned build tools (package-lock.json) if this checkout has none yet."""
    if not (SNIPPET_DIR / "node_modules" / "esbuild").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=SNIPPET_DIR, check=True,
                       capture_output=True, timeout=300)


def test_built_file_is_within_the_gzip_budget():
    """The committed dni.js is at most 2,500 bytes gzipped."""
    size = len(gzip.compress(BUILT.read_bytes(), compresslevel=9, mtime=0))
    assert size <= BUDGET_GZIP, f"dni.js is {size} B gzipped, over the {BUDGET_GZIP} B budget"


def test_built_file_is_es5_syntax():
    """No arrows, let/const, template literals or classes reach the browser."""
    code = BUILT.read_text()
    # Strings in the snippet hold no backticks or arrows, so a plain scan is exact enough;
    # the build also runs es-check (a full ES5 parse) on source and output.
    assert "=>" not in code
    assert "`" not in code
    assert not re.search(r"\b(let|const|class)\s", code)
    assert code.startswith("!function(") or code.startswith("(function(")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_rebuilding_gives_exactly_the_committed_file():
    """`npm run check` rebuilds in memory (with the ES5 check) and matches dni.js byte for byte."""
    node_modules()
    result = subprocess.run(["node", "build.mjs", "--check"], cwd=SNIPPET_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
