"""The vendor registry: every upstream the gateway can call, and where each is configured.

One entry per vendor: its adapter (which owns the wire format, the native client format and
the pass-through), the vendor's public API root, the environment variables that hold the
operator's key and an optional base-URL override, and where the built-in emulator serves the
same wire. Settings, the upstream table, the catalog and the emulator start-up read this; no
module outside `vendors/` names a vendor.

OpenAI-compatible upstreams an operator declares in the catalog file (`[upstreams.<name>]`)
join the five built-in vendors here, with the OpenAI adapter under their own name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tokenrelay.vendors.anthropic import ANTHROPIC, ANTHROPIC_BATCHES
from tokenrelay.vendors.base import BatchWire, Vendor
from tokenrelay.vendors.deepseek import DEEPSEEK
from tokenrelay.vendors.gemini import GEMINI, GEMINI_BATCHES
from tokenrelay.vendors.openai import OPENAI_BATCHES, OpenAICompatible
from tokenrelay.vendors.openai_responses import OPENAI_VENDOR
from tokenrelay.vendors.xai import XAI, XAI_BATCHES

# The emulator serves any config-defined OpenAI-compatible upstream under this path + its name.
COMPATIBLE_EMULATOR_PREFIX = "/compat/"


@dataclass(frozen=True, slots=True)
class VendorSpec:
    adapter: Vendor
    base_url: str  # the vendor's public API root (overridable: `base_url_env`)
    key_env: str  # the environment variable holding the operator's API key
    emulator_path: str  # where the emulator serves this wire, under the emulator's root

    @property
    def name(self) -> str:
        return self.adapter.name

    @property
    def base_url_env(self) -> str:
        return "TOKENRELAY_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper()) + "_BASE_URL"

    def api_key(self, env: Mapping[str, str] = os.environ) -> str | None:
        return env.get(self.key_env) or None

    def endpoint_url(self, env: Mapping[str, str] = os.environ) -> str:
        return (env.get(self.base_url_env) or self.base_url).rstrip("/")


BUILTIN: tuple[VendorSpec, ...] = (
    VendorSpec(ANTHROPIC, "https://api.anthropic.com", "ANTHROPIC_API_KEY", "/anthropic"),
    VendorSpec(OPENAI_VENDOR, "https://api.openai.com/v1", "OPENAI_API_KEY", "/openai/v1"),
    VendorSpec(GEMINI, "https://generativelanguage.googleapis.com", "GEMINI_API_KEY", "/gemini"),
    VendorSpec(XAI, "https://api.x.ai/v1", "XAI_API_KEY", "/xai/v1"),
    VendorSpec(DEEPSEEK, "https://api.deepseek.com", "DEEPSEEK_API_KEY", "/deepseek"),
)
BUILTIN_NAMES = frozenset(spec.name for spec in BUILTIN)
# The vendors with a batch API of their own (DeepSeek has none; nor do compatible upstreams).
BATCH_WIRES: dict[str, BatchWire] = {
    "anthropic": ANTHROPIC_BATCHES,
    "openai": OPENAI_BATCHES,
    "gemini": GEMINI_BATCHES,
    "xai": XAI_BATCHES,
}


@dataclass(frozen=True, slots=True)
class CompatibleUpstream:
    """An OpenAI-compatible upstream declared by the operator (catalog `[upstreams.<name>]`)."""

    name: str
    base_url: str
    key_env: str
    max_tokens_field: str = "max_tokens"


def compatible(upstream: CompatibleUpstream) -> VendorSpec:
    adapter = OpenAICompatible(name=upstream.name, max_tokens_field=upstream.max_tokens_field)
    path = COMPATIBLE_EMULATOR_PREFIX + upstream.name + "/v1"
    return VendorSpec(adapter, upstream.base_url, upstream.key_env, path)


def registry(extra: Iterable[CompatibleUpstream] = ()) -> dict[str, VendorSpec]:
    """Every vendor by name: the built-in five, then the operator's compatible upstreams."""
    specs = {spec.name: spec for spec in BUILTIN}
    for upstream in extra:
        specs[upstream.name] = compatible(upstream)
    return specs
