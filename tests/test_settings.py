"""Settings: what code passes wins and the environment fills in the rest; a secret shows in no
repr; a boolean variable takes the spellings it always took; a sign-up credit the ledger cannot
credit exactly fails the start."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tokenrelay.settings import Settings, SettingsError


def test_what_code_passes_wins_and_the_environment_fills_in_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOKENRELAY_HOST", "10.0.0.7")
    monkeypatch.setenv("TOKENRELAY_PORT", "9000")
    monkeypatch.setenv("TOKENRELAY_LOGIN_ATTEMPTS", "7")
    # By field name or by the variable's name; strings converted as from the environment.
    s = Settings(port=8081, TOKENRELAY_LOGIN_ATTEMPTS="9", emulate="all")
    assert (s.host, s.port, s.login_attempts, s.emulate) == ("10.0.0.7", 8081, 9, "all")
    with pytest.raises(TypeError, match="prot"):
        Settings(prot=8081)  # a misspelt setting is not silently ignored


def test_a_secret_shows_in_no_repr() -> None:
    s = Settings(admin_token="hunter2-admin", session_secret="hunter2-session")
    assert s.admin_token is not None and s.admin_token.get_secret_value() == "hunter2-admin"
    shown = f"{s!r} {s.admin_token} {s.session_secret!r}"
    assert "hunter2" not in shown and "admin_token=SecretStr('**********')" in shown
    assert not Settings(admin_token="").admin_token  # an empty variable is as good as unset


@pytest.mark.parametrize(
    ("word", "value"),
    [("on", True), ("OFF", False), ("yes", True), ("n", False), ("1", True), (" false ", False)],
)
def test_a_switch_takes_the_usual_spellings(
    monkeypatch: pytest.MonkeyPatch, word: str, value: bool
) -> None:
    monkeypatch.setenv("TOKENRELAY_UPSTREAM_AFFINITY", word)
    assert Settings().upstream_affinity is value


@pytest.mark.parametrize("amount", ["0.0000000015", "1e30", "-1", "nan"])
def test_a_signup_credit_the_ledger_cannot_take_exactly_fails_the_start(
    monkeypatch: pytest.MonkeyPatch, amount: str
) -> None:
    # 1.5 nano-USD was credited as 1; $1e30 passed the start, then every verification overflowed.
    monkeypatch.setenv("TOKENRELAY_SIGNUP_CREDIT_USD", amount)
    with pytest.raises(SettingsError, match=r"TOKENRELAY_SIGNUP_CREDIT_USD: .*9 decimal places"):
        Settings()


def test_a_signup_credit_to_the_nano_is_taken_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENRELAY_SIGNUP_CREDIT_USD", " 0.290000001 ")
    assert Settings().signup_credit_usd == Decimal("0.290000001")
    assert Settings(signup_credit_usd=0.29).signup_credit_usd == Decimal("0.29")  # not binary
