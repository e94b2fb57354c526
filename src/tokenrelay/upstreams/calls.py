"""Pooled HTTP connections to the vendors, and where each vendor lives (real or emulated)."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

from tokenrelay.catalog import DeploymentSpec
from tokenrelay.errors import GatewayError
from tokenrelay.settings import Settings, Timeouts
from tokenrelay.upstreams.http_client import HttpClient, Response
from tokenrelay.upstreams.pools import Deployment, Pool, VendorEndpoint
from tokenrelay.vendors import VendorSpec
from tokenrelay.vendors.base import UpstreamRequest

log = logging.getLogger("tokenrelay")

EMULATED_KEY = "emulated-vendor-key"
RETRYABLE_STATUS = frozenset({500, 502, 503, 504, 529})
RETRY_BACKOFF_S = 0.2
RETRY_SLEEP_MAX_S = 2.0  # the longest pause between two attempts on a lone deployment
# Where the emulator serves a declared deployment of a vendor it emulates: its own prefix,
# so each deployment keeps its own state there (prompt cache, faults).
EMULATOR_DEPLOYMENT_PREFIX = "/_d/"


class Upstreams:
    """Keep-alive connection pools to the vendors (one per host) and each vendor's deployments
    (`pools`); created in the lifespan. `endpoints` holds each vendor's first deployment: the
    one a request's call is built for (pools.retarget moves it to another)."""

    def __init__(
        self,
        settings: Settings,
        vendors: dict[str, VendorSpec],
        emulator_base: str | None,
        deployments: Iterable[DeploymentSpec] = (),
        timeouts: Mapping[str, Timeouts] | None = None,
    ) -> None:
        """`timeouts`: per vendor, where not the settings' defaults (the catalog's tables)."""
        self.endpoints: dict[str, VendorEndpoint] = {}
        self.pools: dict[str, Pool] = {}
        self.vendors = vendors  # deployment_state builds an operator's new deployments from it
        self.cooldown = {
            "cooldown_s": settings.upstream_cooldown_s,
            "cooldown_max_s": settings.upstream_cooldown_max_s,
        }
        declared: dict[str, list[DeploymentSpec]] = {}
        for d in deployments:
            declared.setdefault(d.vendor, []).append(d)
        cooldown = self.cooldown
        for name, spec in vendors.items():
            if name in declared:
                members = []
                for d in declared[name]:
                    key = os.environ.get(d.api_key_env) or None
                    if settings.is_emulated(key):
                        if emulator_base is None:
                            continue
                        base = emulator_base.rstrip("/") + EMULATOR_DEPLOYMENT_PREFIX + d.name
                        ep = VendorEndpoint(
                            name, spec.adapter, base + spec.emulator_path, EMULATED_KEY, True
                        )
                    elif key is None:
                        continue  # no key, not emulated: this deployment is unavailable
                    else:
                        ep = VendorEndpoint(name, spec.adapter, d.base_url.rstrip("/"), key, False)
                    members.append(
                        Deployment(d.name, ep, weight=d.weight, region=d.region, models=d.models)
                    )
                if members:
                    self.pools[name] = Pool(name, members, **cooldown)
                    self.endpoints[name] = members[0].endpoint
                continue
            key = spec.api_key()
            if settings.is_emulated(key):
                if emulator_base is None:
                    continue
                base, key = emulator_base.rstrip("/") + spec.emulator_path, EMULATED_KEY
                emulated = True
            elif key is None:
                # Not emulated (a production database, or TOKENRELAY_EMULATE=none) and no key:
                # the vendor is unavailable — its models answer 503, /readyz names it.
                continue
            else:
                base, emulated = spec.endpoint_url(), False
            ep = VendorEndpoint(name, spec.adapter, base, key, emulated)
            self.endpoints[name] = ep
            self.pools[name] = Pool(name, [Deployment("default", ep)], **cooldown)
        self.client = HttpClient(timeouts=settings.timeouts())
        self.timeouts = dict(timeouts or {})

    @property
    def emulated(self) -> set[str]:
        return {n for n, e in self.endpoints.items() if e.emulated}

    def snapshots(self) -> list[dict[str, Any]]:
        """Every deployment's state in this process (the console's and the alerts' view)."""
        now = time.monotonic()
        return [d.snapshot(now) for pool in self.pools.values() for d in pool.deployments]

    def deployment(self, deployment_id: str) -> tuple[Pool, Deployment] | None:
        vendor, _, _name = deployment_id.partition("/")
        pool = self.pools.get(vendor)
        if pool is not None:
            for d in pool.deployments:
                if d.id == deployment_id:
                    return pool, d
        return None

    async def open(self, vendor: str, call: UpstreamRequest) -> Response:
        """Send `call`; returns once the vendor's status and headers arrived."""
        headers = {"accept-encoding": "identity", **call.headers}
        timeouts = self.timeouts.get(vendor)
        return await self.client.request(call.method, call.url, headers, call.body, timeouts)

    async def close(self) -> None:
        await self.client.close()


def backoff_s(attempt: int, retry_after: float | None) -> float:
    """The pause before attempt `attempt` (1 = the first retry) on the same deployment:
    the vendor's `retry-after` when it gave one, else a jittered exponential backoff."""
    if retry_after is not None:
        return min(retry_after, RETRY_SLEEP_MAX_S)
    base = RETRY_BACKOFF_S * 2 ** max(attempt - 1, 0)
    return min(base * (0.5 + random.random()), RETRY_SLEEP_MAX_S)


def no_deployment(vendor: str) -> GatewayError:
    return GatewayError(
        "overloaded",
        f"Every deployment of {vendor} is cooling down or out; retry shortly.",
        503,
        retry_after=1.0,
    )


def upstream_unreachable(vendor: str, exc: BaseException, started: bool = False) -> GatewayError:
    """`started`: the vendor had begun its answer (the connection failed, or a timeout ran
    out, while reading it)."""
    if isinstance(exc, TimeoutError):
        return GatewayError("timeout", f"Upstream {vendor} timed out ({exc}).", 504)
    if started:
        return GatewayError("api_error", f"Upstream connection failed: {type(exc).__name__}", 502)
    return GatewayError(
        "api_error", f"Upstream {vendor} is unreachable ({type(exc).__name__}).", 502
    )
