"""Schemathesis against the admin API of a real gateway, on both storage set-ups: generated
requests (valid and invalid, from GET /admin/v1/openapi.json) must never get a 5xx, and every
answer must match the document (status code, content type, body schema).

The example count per operation is TOKENRELAY_FUZZ_EXAMPLES (default 20, about 30 s for
both set-ups); a long run: `TOKENRELAY_FUZZ_EXAMPLES=2000 pytest tests/fuzz -p no:cacheprovider`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backends import BACKENDS, backend
from tokenrelay.admin.api import admin_routes
from tokenrelay.admin.openapi import admin_openapi
from tokenrelay.billing.engine import BillingEngine
from tokenrelay.catalog import Catalog
from tokenrelay.customers.keys import KeyStore
from tokenrelay.settings import Settings
from tokenrelay.store.db import create_engine
from tokenrelay.upstreams.calls import Upstreams
from tokenrelay.vendors import registry

# tests/conftest.py's ADMIN_TOKEN. Not imported: in a whole-suite run `conftest` is whichever
# conftest.py was imported last (tests/emulator has one too); its functions come via pytest.
ADMIN = {"authorization": "Bearer test-admin-token"}

ADDRESSES = (f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in itertools.count(1))
EXAMPLES = int(os.environ.get("TOKENRELAY_FUZZ_EXAMPLES", "20"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module", params=BACKENDS)
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, str]]:
    """A gateway and one funded key on it, so the key routes also meet an id that exists."""
    root = Path(__file__).parents[1] / "conftest.py"
    start_gateway = request.config.pluginmanager.get_plugin(str(root)).start_gateway
    with backend(request.param, tmp_path_factory.mktemp("store")) as store:
        gateway, thread = start_gateway(
            tmp_path_factory.mktemp("gw"),
            database_url=store.database_url,
            redis_url=store.redis_url,
        )
        try:
            r = httpx.post(
                f"{gateway.url}/admin/v1/keys",
                headers=ADMIN,
                json={"name": "fuzz", "credits_usd": "5.00"},
            )
            assert r.status_code == 201, r.text
            yield gateway, r.json()["id"]
        finally:
            gateway.server.should_exit = True
            thread.join(timeout=10)


# The document the gateway serves, loaded at collection time: one test per operation.
CATALOG = Catalog.load(Settings().catalog_path)  # type: ignore[call-arg]
MODELS = [e.id for e in CATALOG.entries()]
# The fuzzed gateway emulates every vendor: each has its one deployment, `default`.
DEPLOYMENTS = [f"{vendor}/default" for vendor in registry(CATALOG.upstreams)]
DOCUMENT = admin_openapi(models=MODELS, deployments=DEPLOYMENTS)
SCHEMA = schemathesis.openapi.from_dict(DOCUMENT)
OPERATIONS = {op.label: op for op in (r.ok() for r in SCHEMA.get_all_operations())}


def test_the_document_describes_every_admin_route(fuzzed: tuple[Any, str]) -> None:
    settings = fuzzed[0].settings
    r = httpx.get(f"{fuzzed[0].url}/admin/v1/openapi.json", headers=ADMIN)
    assert r.status_code == 200 and r.json() == DOCUMENT
    engine = create_engine("sqlite:///:memory:")
    billing = BillingEngine(settings, engine, Catalog.load(settings.catalog_path))
    upstreams = Upstreams(settings, registry(CATALOG.upstreams), None)
    routes = admin_routes(KeyStore(engine), billing, settings=settings, upstreams=upstreams)
    served = {f"{m} {r.path}" for r in routes for m in r.methods or () if m != "HEAD"}
    assert served == set(OPERATIONS)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_admin_api_never_answers_5xx(label: str, fuzzed: tuple[Any, str]) -> None:
    gateway, key_id = fuzzed
    operation = OPERATIONS[label]
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        # Each case from an address of its own (through the trusted proxy, 127.0.0.1): the wrong
        # tokens the fuzzer sends slow their own address, not the cases after them.
        headers = {**ADMIN, "x-forwarded-for": next(ADDRESSES)}
        case.call_and_validate(base_url=gateway.url, headers=headers, checks=CHECKS)
        if "key_id" in (case.path_parameters or {}):
            # The same request on a key that exists: credits and revocations happen for real.
            case.path_parameters = {**case.path_parameters, "key_id": key_id}
            case.call_and_validate(base_url=gateway.url, headers=headers, checks=CHECKS)

    run()


def test_the_ledger_adds_up_after_fuzzing(fuzzed: tuple[Any, str]) -> None:
    """Whatever the fuzzer sent, every balance is still the sum of its ledger."""
    r = httpx.get(f"{fuzzed[0].url}/admin/v1/ledger/verify", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"ok": True, "problems": []}, r.text
