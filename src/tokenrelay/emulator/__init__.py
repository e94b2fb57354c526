"""Deterministic emulator of the five upstream vendors' wire formats (tests, demo, benchmarks).

It deliberately shares no code with the gateway's adapters, so a bug there cannot hide here.
"""

from tokenrelay.emulator.app import create_app

__all__ = ["create_app"]
