"""`tokenrelay serve` as a child process (SQLite, emulated vendors), as an operator runs it,
with what the client tests read back: the vendor calls the emulator saw, the usage records and
the ledger check."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway_support import ADMIN_TOKEN, free_port

EXE = str(Path(sys.executable).with_name("tokenrelay"))


@dataclass
class ServedGateway:
    url: str
    emulator_url: str
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, tmp: Path) -> ServedGateway:
        port, emulator_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENRELAY_")}
        env.pop("WEB_CONCURRENCY", None)
        env |= {
            "TOKENRELAY_DATABASE_URL": f"sqlite:///{tmp / 'gateway.db'}",
            "TOKENRELAY_EMULATE": "all",
            "TOKENRELAY_EMULATOR_PORT": str(emulator_port),
            "TOKENRELAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "TOKENRELAY_LOG_LEVEL": "warning",
        }
        log = (tmp / "gateway.log").open("wb")
        process = subprocess.Popen(
            [EXE, "serve", "--port", str(port)], env=env, cwd=tmp, stdout=log, stderr=log
        )
        gw = cls(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{emulator_port}", env, process)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(gw.url + "/readyz").status_code == 200:
                    return gw
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                gw.stop()
                raise RuntimeError("tokenrelay serve did not start:\n" + _tail(tmp / "gateway.log"))
            time.sleep(0.1)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _admin(self, method: str, path: str, **kw: Any) -> Any:
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        r = httpx.request(method, self.url + path, headers=headers, timeout=30, **kw)
        assert r.is_success, r.text
        return r.json()

    def create_key(self, name: str) -> tuple[str, str]:
        """A funded key: (its id, the secret)."""
        made = self._admin("POST", "/admin/v1/keys", json={"name": name, "credits_usd": "50.00"})
        return made["id"], made["key"]

    def usage(self, key_id: str) -> list[dict[str, Any]]:
        return list(self._admin("GET", "/admin/v1/usage", params={"key_id": key_id})["data"])

    def emulator_mark(self) -> int:
        """The emulator's latest request number: `vendor_calls` counts those after it."""
        seen = httpx.get(self.emulator_url + "/_requests").json()["data"]
        return max((int(r["seq"]) for r in seen), default=0)

    def vendor_calls(self, since: int, vendor: str = "") -> list[dict[str, Any]]:
        """The model calls the emulator answered (for `vendor`, or any) after mark `since`
        (token counts and model lists are not billed: left out)."""
        seen = httpx.get(self.emulator_url + "/_requests").json()["data"]
        assert not seen or min(int(r["seq"]) for r in seen) <= since + 1, "emulator log overran"
        return [
            r
            for r in seen
            if int(r["seq"]) > since
            and str(r["path"]).startswith(f"/{vendor}/" if vendor else "/")
            and r["method"] == "POST"
            and "count" not in str(r["path"]).lower()
        ]

    def ledger_problems(self) -> str:
        """`tokenrelay ledger verify` on the gateway's database: '' when clean."""
        r = subprocess.run(
            [EXE, "ledger", "verify"], env=self.env, capture_output=True, text=True, timeout=60
        )
        return "" if r.returncode == 0 else r.stdout + r.stderr


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]
