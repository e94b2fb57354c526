"""The first calls every customer makes (shared/smoke/seed_examples.py), run as written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from paths import SHARED


def test_seed_examples_pass(gateway, api_key) -> None:
    script = SHARED / "smoke" / "seed_examples.py"
    if not script.exists():
        pytest.skip(f"{script} not present beside this checkout")
    env = {**os.environ, "TOKENRELAY_URL": gateway.url, "TOKENRELAY_KEY": api_key}
    result = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all seed examples passed" in result.stdout
