"""The billing policy: what a customer pays for each way a request can end, in one table.

Every usage record carries its outcome's reason code. What the vendor billed for a request
(its usage at list price: `upstream_cost_nano`) is recorded whatever the customer pays; the
part of it the customer does not pay is the operator's loss (`loss_nano`), so margins show it.

The operator picks one policy (`TOKENRELAY_BILLING_POLICY`). The default, `delivered`, never
bills a customer for a request that delivered nothing; `vendor_accepted_input` also bills the
prompt of a request the vendor accepted (answered 200) but whose output never reached the
client. README.md's billing section is rendered from `TABLE` (`render_markdown`; a test holds
the two equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, get_args

from tokenrelay import ir
from tokenrelay.settings import BillingPolicy

if TYPE_CHECKING:
    from tokenrelay.billing.metering import RequestContext


class Charge(StrEnum):
    USAGE = "usage"  # the metered usage: the vendor's count, or an estimate of what was delivered
    INPUT = "input"  # the prompt only (input and cache tokens), no output
    NOTHING = "nothing"


class Outcome(StrEnum):
    COMPLETED = "completed"
    INCOMPLETE_LENGTH = "incomplete_length"
    CLIENT_CUT_BEFORE_FIRST_BYTE = "client_cut_before_output"
    CLIENT_CUT_MID_STREAM = "client_cut_mid_stream"
    CLIENT_CUT_BEFORE_BODY = "client_cut_before_body"
    VENDOR_ERROR_BEFORE_OUTPUT = "vendor_error_before_output"
    VENDOR_ERROR_AFTER_OUTPUT = "vendor_error_after_output"
    GATEWAY_CUT_BEFORE_OUTPUT = "gateway_cut_before_output"
    GATEWAY_CUT_AFTER_OUTPUT = "gateway_cut_after_output"
    NOT_ANSWERED = "not_answered"
    RETRIED_ATTEMPT = "retried_attempt"
    FALLBACK_ATTEMPT = "fallback_attempt"


@dataclass(frozen=True, slots=True)
class Rule:
    outcome: Outcome
    when: str  # the outcome, as a customer would describe it
    delivered: Charge
    vendor_accepted_input: Charge

    def charge(self, policy: BillingPolicy) -> Charge:
        return self.vendor_accepted_input if policy == "vendor_accepted_input" else self.delivered


_U, _I, _N = Charge.USAGE, Charge.INPUT, Charge.NOTHING
TABLE: tuple[Rule, ...] = (
    Rule(Outcome.COMPLETED, "the answer reached the client in full", _U, _U),
    Rule(Outcome.INCOMPLETE_LENGTH, "complete, stopped at max_tokens (length)", _U, _U),
    Rule(
        Outcome.CLIENT_CUT_BEFORE_FIRST_BYTE,
        "the client left a stream before any output reached it",
        _N,
        _I,
    ),
    Rule(
        Outcome.CLIENT_CUT_MID_STREAM,
        "the client left a stream after output reached it (billed: what was generated)",
        _U,
        _U,
    ),
    Rule(
        Outcome.CLIENT_CUT_BEFORE_BODY,
        "the client left before a non-stream answer could be sent",
        _N,
        _I,
    ),
    Rule(
        Outcome.VENDOR_ERROR_BEFORE_OUTPUT,
        "the vendor failed after accepting the call, before any output (e.g. a stream that "
        "carried only an error event)",
        _N,
        _I,
    ),
    Rule(
        Outcome.VENDOR_ERROR_AFTER_OUTPUT,
        "the vendor failed mid-stream after output reached the client (billed: what was delivered)",
        _U,
        _U,
    ),
    Rule(
        Outcome.GATEWAY_CUT_BEFORE_OUTPUT,
        "the gateway shut down before any output reached the client",
        _N,
        _N,
    ),
    Rule(
        Outcome.GATEWAY_CUT_AFTER_OUTPUT,
        "the gateway shut down mid-stream (billed: what was delivered)",
        _U,
        _U,
    ),
    Rule(
        Outcome.NOT_ANSWERED,
        "no vendor answered 200 (refused, unreachable, rejected by the gateway, or the ledger "
        "could not commit)",
        _N,
        _N,
    ),
    Rule(
        Outcome.RETRIED_ATTEMPT,
        "an attempt that failed before the one that answered (no record of its own: the "
        "request's `attempts` counts it)",
        _N,
        _N,
    ),
    Rule(
        Outcome.FALLBACK_ATTEMPT,
        "an attempt on the model asked before a fallback model answered (likewise)",
        _N,
        _N,
    ),
)
RULES = {rule.outcome: rule for rule in TABLE}
# What each outcome is charged, per policy: the table read once, not on every settlement.
_CHARGES: dict[str, dict[Outcome, Charge]] = {
    policy: {rule.outcome: rule.charge(policy) for rule in TABLE}
    for policy in get_args(BillingPolicy)
}
_LENGTH_STOPS = ("max_tokens", "length")


def outcome(ctx: RequestContext) -> Outcome:
    """How the request ended, from its accounting context."""
    if not ctx.upstream_answered:
        return Outcome.NOT_ANSWERED
    delivered = any(ctx.output_text) and not ctx.shown_at_end
    if ctx.status == "ok":
        if ctx.stop_reason in _LENGTH_STOPS:
            return Outcome.INCOMPLETE_LENGTH
        return Outcome.COMPLETED
    if ctx.status == "cancelled":
        if ctx.error == "client disconnected":
            if not ctx.stream:
                return Outcome.CLIENT_CUT_BEFORE_BODY
            if delivered:
                return Outcome.CLIENT_CUT_MID_STREAM
            return Outcome.CLIENT_CUT_BEFORE_FIRST_BYTE
        if delivered and ctx.stream:
            return Outcome.GATEWAY_CUT_AFTER_OUTPUT
        return Outcome.GATEWAY_CUT_BEFORE_OUTPUT
    if delivered and ctx.stream:
        return Outcome.VENDOR_ERROR_AFTER_OUTPUT
    return Outcome.VENDOR_ERROR_BEFORE_OUTPUT


def billable(usage: ir.UsageTotals, reason: Outcome, policy: BillingPolicy) -> ir.UsageTotals:
    """The part of `usage` the customer pays for under `policy`."""
    charge = _CHARGES[policy][reason]
    if charge is Charge.USAGE:
        return usage
    if charge is Charge.INPUT:
        return ir.UsageTotals(
            input=usage.input,
            cache_read=usage.cache_read,
            cache_write=usage.cache_write,
            cache_write_1h=usage.cache_write_1h,
        )
    return ir.UsageTotals()


_SAYS = {
    Charge.USAGE: "usage",
    Charge.INPUT: "input only",
    Charge.NOTHING: "nothing",
}


def render_markdown() -> str:
    """The policy table as README.md shows it."""
    lines = [
        "| Outcome | Reason code | `delivered` (default) | `vendor_accepted_input` |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.when} | `{r.outcome.value}` | {_SAYS[r.delivered]} "
        f"| {_SAYS[r.vendor_accepted_input]} |"
        for r in TABLE
    ]
    return "\n".join(lines) + "\n"
