"""Standalone runner: ``python -m tokenrelay.emulator --host 127.0.0.1 --port 9100``."""

from __future__ import annotations

import argparse

import uvicorn

from tokenrelay.emulator.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tokenrelay.emulator",
        description="Deterministic emulator of five AI vendors.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    uvicorn.run(
        create_app(), host=args.host, port=args.port, log_level=args.log_level, access_log=False
    )


if __name__ == "__main__":
    main()
