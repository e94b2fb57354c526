"""/docs: a table of contents, one section per concept with a tab per client, the base URL from
the configured public URL (never the Host header) and, signed in, the key placeholder filled
with the prefix of the customer's own key."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tokenrelay.billing import policy
from tokenrelay.portal import docs_examples as ex

if TYPE_CHECKING:
    from tokenrelay.portal.routes import Portal

TOC = (
    ("start", "Quick start"),
    ("base-urls", "Base URLs and keys"),
    *((sid, title) for sid, title, _ in ex.SECTIONS),
    ("coding-clis", "Coding CLIs"),
    ("models", "Models and prices"),
    ("errors", "Errors"),
    ("limits", "Limits and rate-limit headers"),
    ("billing", "Billing and billing reasons"),
)


# What each charge means to the customer; attempts have no record of their own.
CHARGED = {
    policy.Charge.USAGE: "the tokens used",
    policy.Charge.INPUT: "the prompt only",
    policy.Charge.NOTHING: "nothing",
}
ATTEMPTS = (policy.Outcome.RETRIED_ATTEMPT, policy.Outcome.FALLBACK_ATTEMPT)


class DocsPage:
    def __init__(self, portal: Portal) -> None:
        self.portal = portal

    async def _key_placeholder(self, request: Request) -> tuple[bool, str]:
        found = await self.portal.visitor(request)
        if found is None:
            return False, self.portal.settings.key_prefix + "..."
        keys = await self.portal.keys.list_for_account(found[1].id)
        live = [k for k in keys if not k.revoked and not k.expired()]
        return True, (live[0].key_hint if live else self.portal.settings.key_prefix + "...")

    async def docs(self, request: Request) -> Response:
        signed_in, key = await self._key_placeholder(request)
        base = self.portal.brand.public_url
        catalog = self.portal.models()
        models = ex.pick_models(catalog)
        sections = [(sid, title, ex.tabbed(make(base, models))) for sid, title, make in ex.SECTIONS]
        return self.portal.page(
            request,
            "docs.html",
            account=signed_in,
            base=base,
            key=key,
            key_env=ex.KEY_ENV,
            toc=TOC,
            sections=sections,
            clis=ex.tabbed(ex.coding_clis(base, models, f"${ex.KEY_ENV}", self.portal.brand.slug)),
            models=models,
            model_count=len(catalog),
            charges=[
                (str(r.outcome), r.when, CHARGED[r.charge(self.portal.settings.billing_policy)])
                for r in policy.TABLE
                if r.outcome not in ATTEMPTS
            ],
        )

    def routes(self) -> list[BaseRoute]:
        return [Route("/docs", self.docs)]
