"""`payments:` settings: validated with one message naming the key, the webhook secret hidden
wherever settings are printed (`config check`)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fsbill.cli.main import main
from fsbill.config import PaypalConfig, StripeConfig, load_settings, printable
from fsbill.errors import ConfigError


def test_the_webhook_secret_is_marked_secret():
    for cls in (StripeConfig, PaypalConfig):
        for f in dataclasses.fields(cls):
            if "secret" in f.name or "password" in f.name:
                assert f.metadata.get("secret") == "value", f.name


def test_config_check_hides_the_webhook_secret(tmp_path, capsys):
    path = tmp_path / "f.yaml"
    path.write_text(
        f"database: sqlite:///{tmp_path}/x.db\n"
        "api: {listen: '127.0.0.1:8099'}\n"
        "payments: {stripe: {webhook_secret: whsec_TOPSECRET}, paypal: {receiver_email: me@example.com}}\n",
        encoding="utf-8",
    )
    settings = load_settings(str(path))
    assert settings.payments.stripe.webhook_secret == "whsec_TOPSECRET"
    assert "TOPSECRET" not in repr(printable(settings))
    assert main(["config", "check", "--json", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "TOPSECRET" not in out
    shown = json.loads(out)["settings"]["payments"]
    assert shown["stripe"]["webhook_secret"] == "********"
    assert shown["paypal"]["receiver_email"] == "me@example.com"
    assert shown["paypal"]["verify_url"] == "https://ipnpb.paypal.com/cgi-bin/webscr"


@pytest.mark.parametrize(
    "payments, key",
    [
        ({"stripe": {"webhook_secret": "sk_live_x"}}, "payments.stripe.webhook_secret"),
        ({"stripe": {"tolerance_s": 0}}, "payments.stripe.tolerance_s"),
        ({"stripe": {"secret": "x"}}, "payments.stripe.secret"),
        ({"paypal": {"receiver_email": "not an address"}}, "payments.paypal.receiver_email"),
        ({"paypal": {"verify_url": "ftp://x"}}, "payments.paypal.verify_url"),
        ({"braintree": {}}, "payments.braintree"),
    ],
)
def test_bad_payment_settings_name_their_key(payments, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(None, {"payments": payments})


def test_gateways_without_the_api_listener_are_refused_naming_it():
    with pytest.raises(ConfigError, match=r"payments.*api\.listen"):
        load_settings(None, {"payments": {"stripe": {"webhook_secret": "whsec_x"}}})
    assert load_settings(
        None, {"payments": {"stripe": {"webhook_secret": "whsec_x"}}, "api": {"listen": "127.0.0.1:0"}}
    )
