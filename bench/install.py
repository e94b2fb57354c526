"""Idempotent setup: nginx and wrk from apt, LiteLLM in its own venv (never in the project lock)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable

from bench.contenders import LITELLM_VENV, REPO


def _run(cmd: list[str]) -> bool:
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT).returncode == 0


def apt_packages(log: Callable[[str], None]) -> None:
    need = {"nginx": "nginx", "wrk": "wrk", "node": "nodejs", "taskset": "util-linux"}
    missing = [pkg for binary, pkg in need.items() if shutil.which(binary) is None]
    if not missing:
        return
    log(f"installing from apt: {' '.join(missing)}")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    env_ok = _run(cmd) or (_run(["apt-get", "update"]) and _run(cmd))
    if not env_ok:
        sys.exit(f"apt-get install {' '.join(missing)} failed (run as root?)")


# Beyond litellm[proxy]: httptools (uvicorn's fast HTTP parser) and opentelemetry-sdk. Without
# the SDK, LiteLLM 1.108 retries a failing import inside its auth hook on every request, which
# halves its throughput here; installing it gives the peer its best shot.
LITELLM_PACKAGES = ("litellm[proxy]", "httptools", "opentelemetry-sdk")


def litellm_venv(log: Callable[[str], None]) -> None:
    stamp = LITELLM_VENV / "bench-installed.txt"
    want = "\n".join(LITELLM_PACKAGES)
    if stamp.exists() and stamp.read_text() == want:
        return
    log(f"installing {' '.join(LITELLM_PACKAGES)} into {LITELLM_VENV.relative_to(REPO)}")
    uv = [sys.executable, "-m", "uv"]
    if not _run([*uv, "--version"]):
        uv = ["python3", "-m", "uv"]
    if not (LITELLM_VENV / "bin" / "python").exists():
        subprocess.run([*uv, "venv", "-q", str(LITELLM_VENV)], check=True)
    subprocess.run(
        [*uv, "pip", "install", "-q", "--python", str(LITELLM_VENV / "bin" / "python"),
         *LITELLM_PACKAGES],
        check=True,
    )  # fmt: skip
    stamp.write_text(want)


def ensure(contenders: list[str], log: Callable[[str], None]) -> None:
    apt_packages(log)
    if "litellm" in contenders:
        litellm_venv(log)
