"""Every environment variable the gateway reads, in one typed place, grouped by concern (one
module a group: server, store, upstreams, billing, portal, batches, ops, emulator).

`Settings` is the groups composed by inheritance, so `settings.login_attempts` stays a plain
attribute (read on the request path: nothing computed per read) and every module that took a
`Settings` still does. Each closed set of values is a Literal, validated once at start:
`get_settings` names the variable that is wrong in one line (`tokenrelay` prints it, exit 2).
Vendor keys and base-URL overrides are read where the vendor registry names them
(tokenrelay.vendors: ANTHROPIC_API_KEY, TOKENRELAY_ANTHROPIC_BASE_URL, ...).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import ValidationError

from tokenrelay.settings.batches import BatchSettings
from tokenrelay.settings.billing import BillingPolicy, BillingSettings, Switch
from tokenrelay.settings.emulator import EmulateMode, EmulatorSettings
from tokenrelay.settings.ops import LogFormat, LogLevel, OpsSettings, OtelMode
from tokenrelay.settings.portal import CookieSecure, PlusTags, PortalSettings, SignupMode
from tokenrelay.settings.server import ServerSettings
from tokenrelay.settings.store import StoreSettings
from tokenrelay.settings.upstreams import OnDisconnect, Timeouts, UpstreamSettings

__all__ = [
    "BillingPolicy",
    "CookieSecure",
    "EmulateMode",
    "LogFormat",
    "LogLevel",
    "OnDisconnect",
    "OtelMode",
    "PlusTags",
    "Settings",
    "SettingsError",
    "SignupMode",
    "Switch",
    "Timeouts",
    "get_settings",
]


class Settings(
    ServerSettings,
    StoreSettings,
    UpstreamSettings,
    BillingSettings,
    PortalSettings,
    BatchSettings,
    OpsSettings,
    EmulatorSettings,
):
    def is_emulated(self, api_key: str | None) -> bool:
        """Whether a vendor with this key (None: not set) is served by the emulator."""
        mode = self.emulate
        if mode == "auto":
            mode = "keyless" if self.embedded else "none"
        return mode == "all" or (mode == "keyless" and api_key is None)


class SettingsError(ValueError):
    """A setting's value is not one the gateway accepts (named, with what it accepts)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise SettingsError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line: each wrong variable by its public name, what it accepts, what it got."""
    problems = []
    for e in exc.errors():
        name = str(e["loc"][0]) if e["loc"] else "settings"
        field = Settings.model_fields.get(name)
        name = field.alias or name if field is not None else name
        problems.append(f"{name}: {e['msg']} (got {e.get('input')!r})")
    return "invalid settings: " + "; ".join(problems)
