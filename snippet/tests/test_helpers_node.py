"""Run the Node unit tests of the snippet's pure helpers (tests/js/) under pytest."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from dni_support import SNIPPET_DIR


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_helper_unit_tests_pass_in_node():
    """Format matching, campaign and GA parsing: node --test tests/js/helpers.test.js passes."""
    result = subprocess.run(["node", "--test", "tests/js/helpers.test.js"], cwd=SNIPPET_DIR,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
