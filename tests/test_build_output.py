"""tools/build_output.mjs: the write-or-check step both front-end builds share."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

MODULE = Path(__file__).resolve().parents[1] / "tools" / "build_output.mjs"


def build(out: Path, code: str, *flags: str) -> subprocess.CompletedProcess:
    """Run writeOrCheck as a build.mjs would, with ``code`` as the freshly built output."""
    script = (f"import {{ writeOrCheck }} from {json.dumps(MODULE.as_uri())};\n"
              f"writeOrCheck({json.dumps(str(out))}, {json.dumps(code)}, 'rebuild it');")
    return subprocess.run(["node", "--input-type=module", "-e", script, "--", *flags],
                          capture_output=True, text=True, timeout=60)


def test_build_writes_the_output(tmp_path):
    out = tmp_path / "out.js"
    result = build(out, "fresh();")
    assert result.returncode == 0, result.stderr
    assert out.read_text() == "fresh();"


def test_check_passes_when_the_committed_file_matches(tmp_path):
    out = tmp_path / "out.js"
    out.write_text("same();")
    result = build(out, "same();", "--check")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout


def test_check_fails_on_a_stale_or_missing_file_and_leaves_it_alone(tmp_path):
    out = tmp_path / "out.js"
    out.write_text("old();")
    stale = build(out, "new();", "--check")
    assert stale.returncode == 1
    assert f"{out} is stale: rebuild it" in stale.stderr
    assert out.read_text() == "old();"
    missing = build(tmp_path / "never.js", "new();", "--check")
    assert missing.returncode == 1 and not (tmp_path / "never.js").exists()
