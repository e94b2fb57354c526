"""Lines for a vendor with a batch API of its own (OpenAI, Anthropic, Gemini, xAI): sent to it
as one vendor batch per (vendor, group: OpenAI's endpoint, Gemini's model), polled until it
ends, each line's answer then settled at the model's batch price and rendered in the line's
client format — as if the gateway had made the call itself.

Each line is decided as a request of its client format would be (`Lines`), so a line in
another format than the vendor's (an Anthropic-format batch for a GPT model) goes to the
vendor translated, and its answer comes back translated. The vendor adapter owns the wire
(`vendors/<vendor>.py`, a `BatchWire`); this module owns the state, in the database:

    queued ─claim─▶ submitting ─sent─▶ at_vendor ─ended─▶ collecting ─settled─▶ an end

A runner that stops between two arrows leaves its lines to go back one step at the next start
(`BatchStore.release_stale`): a line is never run through the gateway once a vendor took it,
and an answer read twice is billed once (its settlement is idempotent by request id). A vendor
that refuses the batch leaves its lines to the gateway-run path.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Protocol

import orjson

from tokenrelay.batches.lines import EMBEDDINGS, FRONTENDS, Answer, Lines
from tokenrelay.batches.store import (
    AT_VENDOR,
    CANCELLED,
    CANCELLING,
    COLLECTING,
    ENDED,
    EXPIRED,
    Batch,
    BatchStore,
    ClaimedLine,
    now,
)
from tokenrelay.customers.keys import ApiKeyInfo
from tokenrelay.errors import GatewayError
from tokenrelay.gateway.decide import Prepared
from tokenrelay.gateway.relay import Relay
from tokenrelay.gateway.respond import Flight
from tokenrelay.vendors import BATCH_WIRES
from tokenrelay.vendors.base import (
    BatchItem,
    BatchLink,
    BatchOutcome,
    BatchWire,
    UpstreamRequest,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("tokenrelay.batches.vendor")

_SETTLE_CHUNK = 1000  # a vendor batch's answers settled together (one Redis round trip)
_SUBMIT_MAX = 10_000  # lines taken per round (a vendor batch holds up to 50,000 or 100,000)
_STATE = {"succeeded": "succeeded", "errored": "errored", "cancelled": CANCELLED}
# A line the vendor's results leave out of a batch that ran (a failed vendor batch).
_NO_ANSWER = b'{"error": {"message": "The vendor\'s batch returned no answer for this request."}}'


class Runner(Protocol):
    """What this module needs of the runner (jobs.BatchJobs) it works for."""

    relay: Relay
    store: BatchStore
    lines: Lines

    async def batch(self, batch_id: str) -> Batch | None: ...
    async def key(self, key_id: str) -> ApiKeyInfo | None: ...
    def finished(self, line: ClaimedLine, batch: Batch, answer: Answer) -> None: ...
    async def flush(self) -> None: ...


class VendorBatches:
    def __init__(self, jobs: Runner, enabled: bool, poll_s: float) -> None:
        self.jobs = jobs
        self.store = jobs.store
        self.lines = jobs.lines
        self.relay = jobs.relay
        self.enabled = enabled
        self.poll_s = poll_s
        self._last_poll = 0.0
        self._client: httpx.AsyncClient | None = None
        self._cancelled: set[str] = set()  # vendor jobs asked to stop (by this process)
        # Whether lines wait at a vendor (as of the last poll, or sent since): the runner then
        # keeps its short rounds so that each poll comes when due.
        self.waiting = False

    def takes(self, f: Flight, endpoint: str) -> bool:
        """Whether a line decided for `f` goes to its vendor's batch API."""
        return self.enabled and endpoint != EMBEDDINGS and f.ctx.vendor in BATCH_WIRES

    def poll_soon(self) -> None:
        self._last_poll = 0.0

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    async def _send(self, call: UpstreamRequest) -> tuple[int, bytes]:
        if self._client is None:
            import httpx  # here: only a vendor batch needs it (~10 MB of idle memory)

            self._client = httpx.AsyncClient(timeout=120.0)
        resp = await self._client.request(
            call.method, call.url, headers=call.headers, content=call.body or None
        )
        return resp.status_code, resp.content

    def _endpoint(self, vendor: str) -> tuple[BatchWire, BatchLink]:
        ep = self.relay.upstreams.endpoints[vendor]
        return BATCH_WIRES[vendor], BatchLink(self._send, ep.api_key, ep.base_url)

    # ---------------------------------------------------------------- send

    async def submit(self) -> int:
        """Send the queued lines, one vendor batch per (vendor, group); the lines sent."""
        claimed = await self.store.claim_for_vendor(_SUBMIT_MAX)
        groups: dict[tuple[str, str], list[tuple[ClaimedLine, Prepared]]] = defaultdict(list)
        for line in claimed:
            batch = await self.jobs.batch(line.batch_id)
            if batch is None:
                continue
            try:
                f = await self._flight(batch, line)
                p, max_output = await self.lines.decide(f, batch.endpoint, orjson.loads(line.body))
                assert isinstance(p, Prepared)
                await self.lines.hold(f, self.lines.admission(f, max_output))
            except GatewayError as err:  # no key any more, over a cap, ...: the line's answer
                status, body = FRONTENDS[batch.endpoint].render_error(err)
                self.jobs.finished(line, batch, Answer(status, orjson.dumps(body), 0))
                continue
            vendor = p.endpoint.name
            groups[(vendor, BATCH_WIRES[vendor].group(p.call))].append((line, p))
        for (vendor, group), members in groups.items():
            wire, link = self._endpoint(vendor)
            items = [BatchItem(str(line.id), p.call) for line, p in members]
            ids = [line.id for line, _ in members]
            try:
                vendor_id = await wire.submit(link, group, items)
            except Exception as exc:  # refused or unreachable: the gateway runs them itself
                log.warning(
                    "vendor batch for %s refused (%s): lines run by the gateway", vendor, exc
                )
                await self.store.to_vendor(ids, None)
                continue
            await self.store.to_vendor(ids, f"{vendor}:{vendor_id}")
            self.waiting = True
            log.info("batch lines %d sent to %s as batch %s", len(ids), vendor, vendor_id)
        return len(claimed)

    async def _flight(self, batch: Batch, line: ClaimedLine) -> Flight:
        key = await self.jobs.key(batch.key_id)
        if key is None or key.revoked:
            raise GatewayError("authentication", "The API key of this batch was revoked.", 401)
        return self.lines.context(key, batch.id, line.line_no, batch.endpoint)

    # ---------------------------------------------------------------- poll, cancel, collect

    async def poll(self, *, force: bool = False) -> None:
        """Every `poll_s`: ask each vendor batch lines wait in whether it ended (asking it to
        stop first when its batch was cancelled or expired), and settle those that did."""
        if not force and time.monotonic() - self._last_poll < self.poll_s:
            return
        self._last_poll = time.monotonic()
        by_job: dict[str, set[str]] = defaultdict(set)
        for job, batch_id in await self.store.vendor_jobs():
            by_job[job].add(batch_id)
        self.waiting = bool(by_job)
        for job, batch_ids in by_job.items():
            try:
                await self._poll_one(job, batch_ids)
            except Exception as exc:  # asked again at the next round
                log.warning("vendor batch %s not polled: %s", job, exc)

    async def _poll_one(self, job: str, batch_ids: set[str]) -> None:
        vendor, _, vendor_id = job.partition(":")
        wire, link = self._endpoint(vendor)
        batches = [b for b in [await self.store.batch(i) for i in batch_ids] if b is not None]
        stopping = any(b.status == CANCELLING or b.expires_at < now() for b in batches)
        if stopping and job not in self._cancelled:
            self._cancelled.add(job)  # asked once: a vendor batch that ended may refuse it
            try:
                await wire.cancel(link, vendor_id)
            except Exception as exc:
                log.warning("vendor batch %s not cancelled: %s", job, exc)
        state = await wire.poll(link, vendor_id)
        if not state.ended:
            return
        outcomes = await wire.results(link, vendor_id, state)
        claimed = await self.store.claim(1_000_000, AT_VENDOR, COLLECTING, vendor_job=job)
        by_id = {o.custom_id: o for o in outcomes}
        fresh = {b.id: b for b in batches}  # as cancelled or not now
        for start in range(0, len(claimed), _SETTLE_CHUNK):
            answered: list[tuple[ClaimedLine, Batch, Flight, Prepared, Answer | None]] = []
            for line in claimed[start : start + _SETTLE_CHUNK]:
                batch = fresh.get(line.batch_id) or await self.store.batch(line.batch_id)
                if batch is None:
                    continue
                outcome = by_id.get(str(line.id)) or BatchOutcome(
                    str(line.id), state.unanswered, 502, _NO_ANSWER
                )
                read = await self._answer(batch, line, outcome)
                if isinstance(read, Answer):
                    self.jobs.finished(line, batch, read)
                else:
                    answered.append((line, batch, *read))
            meter = self.relay.meter
            await meter.settle_lines(
                [(f.admission, f.ctx) for _, _, f, _, _ in answered if f.admission]
            )
            for line, batch, f, p, error in answered:
                self.jobs.finished(line, batch, self.lines.rendered(f, p, error))
            await self.jobs.flush()
        self._cancelled.discard(job)

    async def _answer(
        self, batch: Batch, line: ClaimedLine, outcome: BatchOutcome
    ) -> Answer | tuple[Flight, Prepared, Answer | None]:
        """The line's answer in its client format, or a vendor answer read at the batch price
        (its flight, decision and error if it did not read) for its chunk to settle. Lines the
        vendor did not run end as cancelled or expired (as their batch did)."""
        frontend = FRONTENDS[batch.endpoint]
        state = _STATE.get(outcome.state, EXPIRED)
        if state == CANCELLED and batch.status != CANCELLING and batch.status != ENDED:
            state = EXPIRED  # stopped by the completion window, not by the customer
        if state in (CANCELLED, EXPIRED):
            return Answer(0, b"", 0, state)
        try:
            f = await self._flight(batch, line)
            p, max_output = await self.lines.decide(f, batch.endpoint, orjson.loads(line.body))
            assert isinstance(p, Prepared)
        except GatewayError as err:
            status, body = frontend.render_error(err)
            return Answer(status, orjson.dumps(body), 0)
        if outcome.state != "succeeded":
            refused = GatewayError.from_ir(
                p.endpoint.adapter.parse_error(outcome.status, outcome.body, {})
            )
            status, body = frontend.render_error(refused)
            return Answer(status, orjson.dumps(body), 0)
        return f, p, await self.lines.read_answer(f, p, max_output, outcome.body)
