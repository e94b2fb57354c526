"""pools.Pool in memory: weights, cooldown and the half-open probe, key removal, affinity,
retargeting a call, the catalog's `[[deployments.<vendor>]]` and fallbacks, and what choosing
a deployment costs on the single-deployment path (printed with -s)."""

from __future__ import annotations

import time
import timeit

import pytest

from tokenrelay.catalog import Catalog, CatalogError
from tokenrelay.upstreams.pools import Deployment, Pool, VendorEndpoint, affinity_key, retarget
from tokenrelay.vendors.anthropic import ANTHROPIC
from tokenrelay.vendors.base import UpstreamRequest

MODEL = "claude-haiku-4-5"


def _pool(*weights: int, **kw: float) -> Pool:
    deps = [
        Deployment(
            f"d{i}",
            VendorEndpoint("anthropic", ANTHROPIC, f"http://h{i}", f"k{i}", False),
            weight=w,
        )
        for i, w in enumerate(weights)
    ]
    return Pool("anthropic", deps, **kw)


def _serve(pool: Pool, n: int, affinity: int | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _ in range(n):
        d = pool.pick(MODEL, affinity)
        assert d is not None
        pool.acquire(d)
        pool.succeeded(d)
        pool.release(d)
        counts[d.name] = counts.get(d.name, 0) + 1
    return counts


def test_weights_respected_sequential_and_concurrent() -> None:
    assert _serve(_pool(3, 1), 40) == {"d0": 30, "d1": 10}
    pool = _pool(2, 1)
    for _ in range(3):
        d = pool.pick(MODEL)
        assert d is not None
        pool.acquire(d)
    in_flight = sorted(d.in_flight for d in pool.deployments)
    assert in_flight == [1, 2]  # least in flight / weight


def test_cooldown_probe_and_recovery() -> None:
    pool = _pool(1, 1, cooldown_s=0.05)
    a, b = pool.deployments
    pool.failed(a, "HTTP 503")
    assert all(pool.pick(MODEL) is b for _ in range(5))
    time.sleep(0.1)
    assert pool.pick(MODEL, exclude=[b]) is a  # cooled down: one request may probe it
    pool.acquire(a)  # the probe is under way: nobody else goes there
    assert pool.pick(MODEL, exclude=[b]) is None
    pool.succeeded(a)
    pool.release(a)
    assert a.state(time.monotonic()) == "healthy"
    # retry-after is a floor for the cooldown; failures in a row double it
    assert pool.failed(a, "HTTP 429", retry_after=7.0) >= 7.0
    assert pool.failed(b, "x") < pool.failed(b, "x") * 2


def test_key_refusal_removes_but_never_the_last() -> None:
    pool = _pool(1, 1)
    a, b = pool.deployments
    assert pool.reject_key(a, "HTTP 401")
    assert a.state(0) == "removed" and pool.pick(MODEL) is b
    assert not pool.reject_key(b, "HTTP 401")  # the last one stays: its answer goes out
    assert pool.last_resort(MODEL) is b
    pool.restore(a)
    assert pool.pick(MODEL, exclude=[b]) is a


def test_affinity_is_sticky_and_moves_only_failed_conversations() -> None:
    pool = _pool(1, 1, 1)
    keys = range(300)
    home = {k: pool.pick(MODEL, k) for k in keys}
    assert len({d.name for d in home.values() if d}) == 3
    assert all(pool.pick(MODEL, k) is home[k] for k in keys)
    pool.failed(pool.deployments[0], "HTTP 503")
    moved = [k for k in keys if pool.pick(MODEL, k) is not home[k]]
    assert all(home[k] is pool.deployments[0] for k in moved)
    assert affinity_key({"x-claude-code-session-id": "s"}, {}) == affinity_key(
        {}, {"prompt_cache_key": "s"}
    )
    first = {"role": "user", "content": "hi"}
    turn2 = {"messages": [first, {"role": "assistant", "content": "x"}], "system": "s"}
    assert affinity_key({}, {"messages": [first], "system": "s"}) == affinity_key({}, turn2)


def test_retarget_swaps_base_url_and_key() -> None:
    src = VendorEndpoint("anthropic", ANTHROPIC, "http://a/anthropic", "key-a", False)
    dst = VendorEndpoint("anthropic", ANTHROPIC, "https://b.example", "key-b", False)
    call = UpstreamRequest("POST", "http://a/anthropic/v1/messages", {"x-api-key": "key-a"}, b"{}")
    out = retarget(call, src, dst)
    assert out.url == "https://b.example/v1/messages" and out.headers == {"x-api-key": "key-b"}
    assert call.headers == {"x-api-key": "key-a"}


CATALOG = """
[[deployments.anthropic]]
name = "east"
base_url = "https://east.example"
api_key_env = "EAST_KEY"
weight = 2
region = "us-east"
models = ["claude-haiku-4-5"]

[[deployments.anthropic]]
base_url = "https://west.example"
api_key_env = "WEST_KEY"

[models."claude-haiku-4-5"]
fallbacks = ["gpt-4o-mini", "gemini-2.5-flash"]
"""


def test_catalog_deployments_and_fallbacks() -> None:
    cat = Catalog.from_sources([("pkg", _packaged()), ("ops", CATALOG)])
    east, west = cat.deployments_of("anthropic")
    assert (east.id, east.weight, east.region, east.models) == (
        "anthropic/east",
        2,
        "us-east",
        ("claude-haiku-4-5",),
    )
    assert west.name == "2" and west.models == ()
    entry = cat.get("claude-haiku-4-5")
    assert entry is not None and entry.fallbacks == ("gpt-4o-mini", "gemini-2.5-flash")
    table = CATALOG.split("[models.")[0] + '[fallbacks]\n"claude-haiku-4-5" = ["gpt-4o"]\n'
    entry = Catalog.from_sources([("pkg", _packaged()), ("ops", table)]).get("claude-haiku-4-5")
    assert entry is not None and entry.fallbacks == ("gpt-4o",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[deployments.nope]]\nbase_url="https://x"\napi_key_env="K"', "unknown vendor"),
        ('[[deployments.anthropic]]\nbase_url="ftp://x"\napi_key_env="K"', "base_url"),
        ('[[deployments.anthropic]]\nbase_url="https://x"', "api_key_env"),
        ('[[deployments.anthropic]]\nbase_url="https://x"\napi_key_env="K"\nweight=0', "weight"),
        (
            '[[deployments.anthropic]]\nbase_url="https://x"\napi_key_env="K"\nmodels=["gpt-5"]',
            "not a anthropic model",
        ),
        ('[models."gpt-5"]\nfallbacks = ["no-such-model"]', "fallback"),
        ('[models."gpt-5"]\nfallbacks = ["gpt-5"]', "repeats"),
        ('[fallbacks]\n"nope" = ["gpt-5"]', "not a model"),
    ],
)
def test_catalog_rejects_bad_pool_config(text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message):
        Catalog.from_sources([("pkg", _packaged()), ("ops", text)])


def _packaged() -> str:
    from importlib import resources

    return resources.files("tokenrelay.catalog").joinpath("models.toml").read_text("utf-8")


def test_single_deployment_choice_costs_microseconds() -> None:
    """What the pools add to a request's vendor call on the single-deployment path: pick,
    acquire, succeeded, release (the relay's other additions are attribute reads)."""
    pool = _pool(1)

    def once() -> None:
        d = pool.pick(MODEL, None, ())
        assert d is not None
        pool.acquire(d)
        pool.succeeded(d)
        pool.release(d)

    n = 200_000
    per_call = min(timeit.repeat(once, number=n, repeat=3)) / n * 1e6
    three = _pool(1, 1, 1)
    per_pick3 = min(timeit.repeat(lambda: three.pick(MODEL, 12345, ()), number=n, repeat=3))
    print(
        f"\npool overhead: single deployment {per_call:.2f} us/request; "
        f"3 deployments with affinity {per_pick3 / n * 1e6:.2f} us/pick"
    )
    assert per_call < 20
