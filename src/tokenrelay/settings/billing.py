"""Money: whether requests are billed, what each way a request ends costs, settlement
batching, and the key usage receipts are signed with."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from tokenrelay.settings.group import Group

Switch = Literal["on", "off"]
# What a customer pays for each way a request ends (billing/policy.py, README "Billing").
BillingPolicy = Literal["delivered", "vendor_accepted_input"]


class BillingSettings(Group):
    # "on" reserves, settles and records every request; "off" only prices responses.
    billing: Switch = Field("on", alias="TOKENRELAY_BILLING")
    billing_policy: BillingPolicy = Field("delivered", alias="TOKENRELAY_BILLING_POLICY")
    # The settlement writer waits this long for more records before committing a batch.
    writer_batch_ms: float = Field(2.0, alias="TOKENRELAY_WRITER_BATCH_MS")
    # Ed25519 private seed (32 bytes, base64) usage receipts are signed with; the same on every
    # replica. Unset: generated once and kept in the database (billing/receipts.py).
    receipt_key: SecretStr | None = Field(None, alias="TOKENRELAY_RECEIPT_KEY")
    # The seeds receipts were signed with before a rotation (comma-separated): their receipts
    # still verify and the compaction items sealed under them still open; none signs again.
    receipt_key_previous: SecretStr | None = Field(None, alias="TOKENRELAY_RECEIPT_KEY_PREVIOUS")
    # Which answers carry their signed receipt: "on_request" — those whose request sends
    # `x-tokenrelay-receipt: 1` (every receipt is also at GET /v1/receipts/{request_id} and in
    # the usage CSV); "always" — every answer (about 80 µs of CPU a request: a quarter of it).
    receipts: Literal["on_request", "always"] = Field("on_request", alias="TOKENRELAY_RECEIPTS")
