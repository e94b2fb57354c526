"""The first calls every customer makes (examples/seed_examples.py, which the README names),
run as written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_seed_examples_pass(gateway, api_key) -> None:
    script = Path(__file__).resolve().parents[2] / "examples" / "seed_examples.py"
    env = {**os.environ, "TOKENRELAY_URL": gateway.url, "TOKENRELAY_API_KEY": api_key}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all seed examples passed" in result.stdout
