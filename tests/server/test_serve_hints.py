"""What `make run` (`tokenrelay serve --quickstart-key`) tells a newcomer: where the site and
the console are, the key on the first run and how to get one on the next, and a way out when
the port is taken."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from gateway_support import free_port

TOKENRELAY = str(Path(sys.executable).parent / "tokenrelay")


def _serve_until_console_line(env: dict[str, str], port: int) -> str:
    """Start the server, read its first lines up to the console's, then stop it."""
    proc = subprocess.Popen(
        [TOKENRELAY, "serve", "--port", str(port), "--quickstart-key"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Operator console:"):
                break
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return "".join(lines)


def test_first_and_second_run_say_where_to_go(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TOKENRELAY_DATABASE_URL": f"sqlite:///{tmp_path}/serve.db",
        "TOKENRELAY_EMULATE": "all",
        "PYTHONUNBUFFERED": "1",  # the lines as they are printed
    }
    first = _serve_until_console_line(env, port)
    assert "Quick-start API key" in first and "sk-aic-" in first
    assert f"Site: http://127.0.0.1:{port}/" in first
    assert f"Operator console: http://127.0.0.1:{port}/admin" in first
    # A port of its own: under xdist another test may have taken the first one meanwhile.
    port = free_port()
    second = _serve_until_console_line(env, port)
    assert "sk-aic-" not in second
    assert f"sign up at http://127.0.0.1:{port}/signup" in second
    assert "tokenrelay keys create" in second


def test_a_port_in_use_gets_a_hint(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [TOKENRELAY, "serve", "--port", str(port)],
            env={**os.environ, "TOKENRELAY_DATABASE_URL": f"sqlite:///{tmp_path}/p.db"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"PORT={port + 1}" in done.stderr and "Traceback" not in done.stderr
