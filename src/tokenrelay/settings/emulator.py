"""The built-in vendor emulator: which vendors it serves, and where it runs."""

from __future__ import annotations

from typing import Literal

from tokenrelay.settings.group import Group, env

# "auto": vendors without a key, on the embedded default (SQLite) only — with a production
# database a vendor without a key is unavailable (a forgotten key must never mean paying
# customers get emulated replies); "keyless": those without a key, anywhere (explicit opt-in);
# "none": never; "all": every vendor, even with a key (demo, tests).
EmulateMode = Literal["auto", "keyless", "none", "all"]


class EmulatorSettings(Group):
    emulate: EmulateMode = env("TOKENRELAY_EMULATE", "auto")
    # Where the emulator runs; empty = the gateway starts it itself, as a second server in its
    # process on 127.0.0.1:TOKENRELAY_EMULATOR_PORT (0 = any free port), never on its own port.
    emulator_url: str | None = env("TOKENRELAY_EMULATOR_URL", None)
    emulator_port: int = env("TOKENRELAY_EMULATOR_PORT", 0)
