"""Upstream deployments per vendor: which one takes the next attempt, and which may not.

A vendor has one deployment (the registry's endpoint) unless the catalog declares several
(`[[deployments.<vendor>]]`: base URL, key, weight, region, models). Choosing costs a few
comparisons in memory, never I/O or a lock (one event loop owns a pool):

- *least in-flight*: the lowest in flight / weight wins; ties go to the fewest served
  per weight, so light sequential traffic spreads by weight too;
- *affinity*: a request with a conversation key (a session header, `prompt_cache_key`, or a
  hash of the prompt's stable prefix) goes to the deployment that weighted rendezvous hashing
  gives that key among the available ones: the same one turn after turn while it stays
  healthy (the vendor's prompt cache lives there), and a failed deployment moves only its own
  conversations;
- *cooldown*: a deployment that failed (connection error, 5xx/529, 429) rests for an
  exponential backoff (at least the vendor's `retry-after`), then one request probes it back
  in (half-open) while the others keep away;
- *removal*: a deployment whose key the vendor rejects (401/403) is taken out until an
  operator restores it; *draining* takes one out by hand. The last usable deployment of a
  vendor is never removed: the vendor's own answer then goes to the client, request by request.
"""

from __future__ import annotations

import logging
import math
import random
import time
import zlib
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from tokenrelay.vendors.base import UpstreamRequest, Vendor

log = logging.getLogger("tokenrelay.upstreams.pools")

# A conversation's key: whichever the client sends first.
SESSION_HEADERS = ("x-claude-code-session-id", "x-session-id")
_BODY_KEYS = ("prompt_cache_key", "user")


@dataclass(slots=True, frozen=True)
class VendorEndpoint:
    name: str
    adapter: Vendor
    base_url: str
    api_key: str
    emulated: bool


class Deployment:
    """One base URL + key of a vendor, and its health as this process sees it."""

    __slots__ = (
        "cooling_until",
        "drained",
        "endpoint",
        "failures",
        "id",
        "in_flight",
        "last_error",
        "models",
        "name",
        "probing",
        "region",
        "removed",
        "salt",
        "served",
        "total_failures",
        "vendor",
        "weight",
    )

    def __init__(
        self,
        name: str,
        endpoint: VendorEndpoint,
        *,
        weight: int = 1,
        region: str | None = None,
        models: Collection[str] = (),
    ) -> None:
        self.vendor = endpoint.name
        self.name = name
        self.id = f"{endpoint.name}/{name}"
        self.endpoint = endpoint
        self.weight = max(int(weight), 1)
        self.region = region
        self.models: frozenset[str] | None = frozenset(models) or None
        self.salt = zlib.crc32(self.id.encode())
        self.in_flight = 0
        self.served = 0
        self.failures = 0  # consecutive: sets the next cooldown
        self.total_failures = 0
        self.cooling_until = 0.0  # monotonic seconds; 0: healthy
        self.probing = False  # the one request trying it after a cooldown is under way
        self.removed: str | None = None  # why the vendor refused its key
        self.drained = False
        self.last_error: str | None = None

    def serves(self, model: str) -> bool:
        return self.models is None or model in self.models

    def usable(self) -> bool:
        return self.removed is None and not self.drained

    def state(self, now: float) -> str:
        if self.removed is not None:
            return "removed"
        if self.drained:
            return "drained"
        if self.cooling_until > now:
            return "cooling"
        return "probing" if self.probing else "healthy"

    def snapshot(self, now: float) -> dict[str, Any]:
        state = self.state(now)
        return {
            "id": self.id,
            "vendor": self.vendor,
            "name": self.name,
            "base_url": self.endpoint.base_url,
            "emulated": self.endpoint.emulated,
            "weight": self.weight,
            "region": self.region,
            "models": sorted(self.models) if self.models is not None else None,
            "state": state,
            "cooling_for_s": round(self.cooling_until - now, 3) if state == "cooling" else None,
            "removed_reason": self.removed,
            "in_flight": self.in_flight,
            "served": self.served,
            "consecutive_failures": self.failures,
            "failures": self.total_failures,
            "last_error": self.last_error,
        }


class Pool:
    """The deployments of one vendor. Not thread-safe by design: one event loop owns it."""

    def __init__(
        self,
        vendor: str,
        deployments: list[Deployment],
        *,
        cooldown_s: float = 1.0,
        cooldown_max_s: float = 60.0,
    ) -> None:
        if not deployments:
            raise ValueError(f"pool {vendor!r} has no deployment")
        self.vendor = vendor
        self.deployments = deployments
        self.single = len(deployments) == 1
        self.cooldown_s = cooldown_s
        self.cooldown_max_s = cooldown_max_s
        # Told when a refused key takes a deployment out (deployment_state shares it).
        self.on_removed: Callable[[Deployment], None] | None = None

    @property
    def primary(self) -> Deployment:
        return self.deployments[0]

    def _available(self, d: Deployment, model: str, now: float) -> bool:
        if d.removed is not None or d.drained or not d.serves(model):
            return False
        if d.cooling_until > now:
            return False
        return not (d.cooling_until and d.probing)  # after a cooldown, one probe at a time

    def pick(
        self,
        model: str,
        affinity: int | None = None,
        exclude: Collection[Deployment] = (),
        now: float | None = None,
    ) -> Deployment | None:
        """The deployment for the next attempt, or None when none is available (all cooling,
        removed, drained, not serving `model`, or in `exclude`: tried by this request)."""
        if now is None:
            now = time.monotonic()
        if self.single:
            d = self.deployments[0]
            return d if d not in exclude and self._available(d, model, now) else None
        best: Deployment | None = None
        if affinity is not None:
            top = -math.inf
            for d in self.deployments:
                if d in exclude or not self._available(d, model, now):
                    continue
                # Weighted rendezvous: -w / ln(u), u uniform in (0, 1) from (key, deployment).
                u = (zlib.crc32(affinity.to_bytes(8, "little"), d.salt) + 1) / 4294967297
                score = -d.weight / math.log(u)
                if score > top:
                    best, top = d, score
            return best
        load = math.inf
        served = math.inf
        for d in self.deployments:
            if d in exclude or not self._available(d, model, now):
                continue
            lw = d.in_flight / d.weight
            sw = d.served / d.weight
            if lw < load or (lw == load and sw < served):
                best, load, served = d, lw, sw
        return best

    def last_resort(self, model: str) -> Deployment | None:
        """When none is available: the usable deployment that comes out of cooldown first (a
        lone deployment keeps taking requests, as before there were pools)."""
        usable = [d for d in self.deployments if d.usable() and d.serves(model)]
        return min(usable, key=lambda d: d.cooling_until) if usable else None

    def any_available(self, model: str, exclude: Collection[Deployment] = ()) -> bool:
        now = time.monotonic()
        return any(d not in exclude and self._available(d, model, now) for d in self.deployments)

    # ------------------------------------------------------------------------ outcomes

    @staticmethod
    def acquire(d: Deployment) -> None:
        d.in_flight += 1
        if d.cooling_until:
            d.probing = True

    @staticmethod
    def release(d: Deployment) -> None:
        d.in_flight -= 1
        d.probing = False

    @staticmethod
    def succeeded(d: Deployment) -> None:
        d.served += 1
        if d.failures or d.cooling_until:
            if d.cooling_until:
                log.info("deployment %s is back in", d.id)
            d.failures = 0
            d.cooling_until = 0.0
        d.probing = False

    def failed(self, d: Deployment, reason: str, retry_after: float | None = None) -> float:
        """Cool `d` down: an exponential backoff with jitter, at least `retry_after`. Returns
        the cooldown in seconds."""
        d.failures += 1
        d.total_failures += 1
        d.last_error = reason
        d.probing = False
        backoff = min(self.cooldown_s * 2 ** (d.failures - 1), self.cooldown_max_s)
        backoff *= 0.75 + 0.5 * random.random()
        cool = max(backoff, retry_after or 0.0)
        d.cooling_until = time.monotonic() + cool
        log.warning(
            "deployment %s failed (%s): cooling down %.1f s (failure %d in a row)",
            d.id,
            reason,
            cool,
            d.failures,
        )
        return cool

    def reject_key(self, d: Deployment, reason: str) -> bool:
        """The vendor refused `d`'s key: take it out, unless it is the last usable one. True
        when it was taken out."""
        d.total_failures += 1
        d.last_error = reason
        d.probing = False
        others = [o for o in self.deployments if o is not d and o.usable()]
        if not others:
            log.error("deployment %s: key refused (%s); it is the vendor's last one", d.id, reason)
            return False
        d.removed = reason
        if self.on_removed is not None:
            self.on_removed(d)
        log.error(
            "deployment %s removed: the vendor refused its key (%s); "
            "POST /admin/v1/deployments/%s/restore once fixed",
            d.id,
            reason,
            d.id,
        )
        return True

    def drain(self, d: Deployment) -> None:
        d.drained = True
        log.warning("deployment %s drained by an operator", d.id)

    def restore(self, d: Deployment) -> None:
        d.drained = False
        d.removed = None
        d.failures = 0
        d.cooling_until = 0.0
        d.probing = False
        log.warning("deployment %s restored by an operator", d.id)


def affinity_key(headers: Mapping[str, str], payload: Mapping[str, Any]) -> int:
    """A conversation's key: the session header, the body's `prompt_cache_key`/`user` or
    Anthropic's `metadata.user_id`, else a hash of what stays the same turn after turn (the
    system prompt and the first message)."""
    for name in SESSION_HEADERS:
        value = headers.get(name)
        if value:
            return zlib.crc32(value.encode())
    for name in _BODY_KEYS:
        value = payload.get(name)
        if isinstance(value, str) and value:
            return zlib.crc32(value.encode())
    meta = payload.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str) and meta["user_id"]:
        return zlib.crc32(meta["user_id"].encode())
    # Messages / Chat Completions, Gemini, Responses (whose `input` may be one string).
    messages = payload.get("messages") or payload.get("contents") or payload.get("input") or ()
    first = messages[0] if isinstance(messages, list) and messages else messages or None
    system = (
        payload.get("system") or payload.get("systemInstruction") or payload.get("instructions")
    )
    try:
        return zlib.crc32(orjson.dumps([system, first]))
    except TypeError:
        return 0


def retarget(call: UpstreamRequest, src: VendorEndpoint, dst: VendorEndpoint) -> UpstreamRequest:
    """`call`, built for `src`, as sent to `dst`: the base URL and the key swapped."""
    url = call.url
    if url.startswith(src.base_url):
        url = dst.base_url + url[len(src.base_url) :]
    headers = call.headers
    if src.api_key and src.api_key != dst.api_key:
        old, new = src.api_key, dst.api_key
        headers = {k: v.replace(old, new) if old in v else v for k, v in headers.items()}
        url = url.replace(old, new)
    return UpstreamRequest(
        call.method, url, headers, call.body, call.meta, call.max_output, call.choices
    )
