"""Money: whether requests are billed, what each way a request ends costs, settlement
batching, and the key usage receipts are signed with."""

from __future__ import annotations

from typing import Literal

from tokenrelay.settings.group import Group, env
from tokenrelay.settings.secret import SecretStr

Switch = Literal["on", "off"]
# What a customer pays for each way a request ends (billing/policy.py, README "Billing").
BillingPolicy = Literal["delivered", "vendor_accepted_input"]


class BillingSettings(Group):
    # "on" reserves, settles and records every request; "off" only prices responses.
    billing: Switch = env("TOKENRELAY_BILLING", "on")
    billing_policy: BillingPolicy = env("TOKENRELAY_BILLING_POLICY", "delivered")
    # The settlement writer waits this long for more records before committing a batch.
    writer_batch_ms: float = env("TOKENRELAY_WRITER_BATCH_MS", 2.0)
    # Ed25519 private seed (32 bytes, base64) usage receipts are signed with; the same on every
    # replica. Unset: generated once and kept in the database (billing/receipts.py).
    receipt_key: SecretStr | None = env("TOKENRELAY_RECEIPT_KEY", None)
    # The seeds receipts were signed with before a rotation (comma-separated): their receipts
    # still verify and the compaction items sealed under them still open; none signs again.
    receipt_key_previous: SecretStr | None = env("TOKENRELAY_RECEIPT_KEY_PREVIOUS", None)
    # Which answers carry their signed receipt: "on_request" — those whose request sends
    # `x-tokenrelay-receipt: 1` (every receipt is also at GET /v1/receipts/{request_id} and in
    # the usage CSV); "always" — every answer (about 80 µs of CPU a request: a quarter of it).
    receipts: Literal["on_request", "always"] = env("TOKENRELAY_RECEIPTS", "on_request")
