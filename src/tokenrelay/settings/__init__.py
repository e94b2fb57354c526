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

from tokenrelay.settings.batches import BatchSettings
from tokenrelay.settings.billing import BillingPolicy, BillingSettings, Switch
from tokenrelay.settings.emulator import EmulateMode, EmulatorSettings
from tokenrelay.settings.group import SettingsError
from tokenrelay.settings.ops import LogFormat, LogLevel, OpsSettings, OtelMode
from tokenrelay.settings.portal import CookieSecure, PlusTags, PortalSettings, SignupMode
from tokenrelay.settings.secret import SecretStr
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
    "SecretStr",
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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings from the environment, read once; SettingsError (one line naming each wrong
    variable) if any value is not one the gateway accepts."""
    return Settings()
