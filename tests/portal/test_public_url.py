"""Absolute links come from the configured public URL, never from the request's Host header
(issue 20, item 1): a reset requested with `Host: attacker.example` mails a link to the real
site, pages asked for under an unknown Host are refused, and /docs does not echo Host."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from portal_support import Browser

from gateway_support import RunningGateway, free_port, start_gateway

PASSWORD = "correct horse battery"
EVIL = "attacker.example"


def _start(tmp: Path, **overrides: object) -> Iterator[RunningGateway]:
    gateway, thread = start_gateway(tmp, session_secret="public-url-secret-0123456", **overrides)
    # start_gateway names the port it picked; a port given here is the one it listens on.
    yield dataclasses.replace(gateway, url=f"http://127.0.0.1:{gateway.settings.port}")
    gateway.server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    """`make run`: no public URL configured, links from TOKENRELAY_HOST and _PORT."""
    yield from _start(tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    yield from _start(tmp_path_factory.mktemp("production"), port=port, public_url=public)


def mailed_links(caplog: pytest.LogCaptureFixture, what: str, to: str) -> list[str]:
    return [
        r.getMessage().rsplit(" ", 1)[1]
        for r in caplog.records
        if r.getMessage().startswith(f"{what} for {to} ")
    ]


def reset_with_host(b: Browser, email: str, host: str) -> httpx.Response:
    token = b.csrf("/reset")
    return b.http.post("/reset", data={"email": email, "csrf": token}, headers={"host": host})


def test_a_reset_asked_for_under_another_host_mails_the_real_site(
    embedded: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    Browser(embedded.url).sign_up("victim@example.com")
    attacker = Browser(embedded.url)
    with caplog.at_level(logging.WARNING, logger="tokenrelay.portal"):
        r = reset_with_host(attacker, "victim@example.com", EVIL)
    assert r.status_code == 200
    (link,) = mailed_links(caplog, "password reset", "victim@example.com")
    assert link.startswith(embedded.url + "/reset/confirm?t="), link
    assert EVIL not in link


def test_docs_do_not_echo_the_host_header(embedded: RunningGateway) -> None:
    page = httpx.get(embedded.url + "/docs", headers={"host": EVIL})
    assert page.status_code == 200
    assert EVIL not in page.text and embedded.url + "/api/proxy" in page.text


def test_with_a_public_url_pages_under_other_hosts_are_refused(
    production: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    Browser(production.url).sign_up("prod@example.com")
    attacker = Browser(production.url)
    with caplog.at_level(logging.WARNING, logger="tokenrelay.portal"):
        r = reset_with_host(attacker, "prod@example.com", EVIL)
    assert r.status_code == 421 and not mailed_links(caplog, "password reset", "prod@example.com")
    for path in ("/", "/docs", "/login", "/dashboard", "/admin/login"):
        assert httpx.get(production.url + path, headers={"host": EVIL}).status_code == 421, path
    # The site's own name, without the port as nginx's $host passes it, is the site.
    assert httpx.get(production.url + "/login", headers={"host": "127.0.0.1"}).status_code == 200
    # The API does not read Host: it answers as ever.
    assert httpx.get(production.url + "/healthz", headers={"host": EVIL}).status_code == 200


playwright_api = pytest.importorskip("playwright.sync_api")


def test_the_mailed_link_works_in_a_browser(
    embedded: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    if not Path("/usr/bin/chromium").exists():
        missing = "chromium not installed"
        pytest.fail(missing) if os.environ.get("CI") else pytest.skip(missing)
    Browser(embedded.url).sign_up("browser-reset@example.com")
    with caplog.at_level(logging.WARNING, logger="tokenrelay.portal"):
        reset_with_host(Browser(embedded.url), "browser-reset@example.com", EVIL)
    (link,) = mailed_links(caplog, "password reset", "browser-reset@example.com")
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
        )
        page = chromium.new_page()
        page.goto(link)
        page.get_by_label("New password").fill("a brand new password")
        page.get_by_role("button", name="Set password").click()
        page.wait_for_url(embedded.url + "/dashboard")
        chromium.close()
