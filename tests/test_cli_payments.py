"""`fsbill payments unmatched|list|apply`: a verified payment fsbill could not match is listed, and an
operator applies it to the account they name, once, audited, never by guess."""

from __future__ import annotations

import json

import pytest
from migrated import migrate_fresh
from payments_rig import M, balance, refunded, seed, start_gateway, succeeded

from fsbill.cli.main import main
from fsbill.db import Store, audit
from fsbill.db import payments as dbpay


@pytest.fixture
def books(tmp_path, sqlite_url):
    config = tmp_path / "fsbill.yaml"
    config.write_text(f"database: {sqlite_url}\n", encoding="utf-8")
    migrate_fresh(sqlite_url)
    store = Store(sqlite_url)
    store.upgrade()
    seed(store, "acme")
    seed(store, "euro", currency="EUR")
    gw = start_gateway(store)
    gw.stripe(succeeded(pi="pi_typo", amount=1200, account="acne"))  # a typo in the portal's metadata
    yield store, gw, str(config)
    gw.close()
    store.close()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unmatched_lists_what_could_not_be_applied(books, capsys):
    _, _, config = books
    code, out, _ = run(capsys, "payments", "unmatched", "--json", "--config", config)
    assert code == 0
    [notice] = json.loads(out)
    assert (notice["identity"], notice["account"], notice["amount"], notice["currency"]) == (
        "stripe:pi_typo",
        "acne",
        "12.00",
        "USD",
    )
    assert notice["reason"] == "no account 'acne'" and notice["status"] == "unmatched"
    code, text, _ = run(capsys, "payments", "unmatched", "--config", config)
    assert "stripe:pi_typo" in text and "no account 'acne'" in text


def test_apply_credits_once_and_is_audited(books, capsys):
    store, gw, config = books
    [notice] = dbpay.unmatched(store)
    code, out, _ = run(
        capsys, "payments", "apply", str(notice.id), "--account", "acme", "--actor", "ops", "--json", "--config", config
    )
    assert code == 0 and json.loads(out)["outcome"] == "credited"
    assert balance(store, "acme") == M("12.00")
    [entry] = audit.entries(store, "account", "acme")
    assert (entry.actor, entry.action, entry.field) == ("ops", "payment_apply", "payment")
    assert dbpay.unmatched(store) == []
    # once: a second apply is refused, naming what became of it
    code, _, err = run(capsys, "payments", "apply", str(notice.id), "--account", "acme", "--json", "--config", config)
    error = json.loads(err)
    assert code == 2 and error["kind"] == "usage" and "is applied, not unmatched" in error["error"]
    # and the payment's redelivery finds it credited
    assert gw.stripe(succeeded(pi="pi_typo", amount=1200, account="acne"))[1]["outcome"] == "duplicate"
    assert (
        gw.stripe(succeeded(pi="pi_typo", amount=1200, account="acne", event_id="evt_2"))[1]["outcome"] == "duplicate"
    )
    assert balance(store, "acme") == M("12.00")
    # its refund now finds the credit
    assert gw.stripe(refunded(pi="pi_typo", refunded_total=200))[1]["outcome"] == "refunded"
    assert balance(store, "acme") == M("10.00")


@pytest.mark.parametrize(
    "account, code, says",
    [
        ("euro", 2, "paid in USD, account 'euro' is in EUR"),
        ("nobody", 2, "no account 'nobody'"),
    ],
)
def test_apply_checks_the_account_like_any_credit(books, capsys, account, code, says):
    store, _, config = books
    [notice] = dbpay.unmatched(store)
    got, out, err = run(capsys, "payments", "apply", str(notice.id), "--account", account, "--json", "--config", config)
    assert got == code and out == "" and says in json.loads(err)["error"]
    assert [n.id for n in dbpay.unmatched(store)] == [notice.id]  # still there, nothing changed
    assert balance(store, "euro") == M("0") and audit.entries(store, "account") == []


def test_apply_an_unknown_notice_is_not_found(books, capsys):
    _, _, config = books
    code, _, err = run(capsys, "payments", "apply", "999", "--account", "acme", "--config", config)
    assert code == 3 and err.startswith("error: no payment notification 999")


def test_list_by_status(books, capsys):
    _, gw, config = books
    gw.stripe(succeeded(pi="pi_ok", amount=100))
    code, out, _ = run(capsys, "payments", "list", "--status", "credited", "--json", "--config", config)
    assert code == 0 and [n["identity"] for n in json.loads(out)] == ["stripe:pi_ok"]


def test_a_refund_that_came_before_its_credit_is_applied_only_to_that_credits_account(books, capsys):
    store, gw, config = books
    assert gw.stripe(refunded(pi="pi_late", refunded_total=300))[1]["outcome"] == "unmatched"
    assert gw.stripe(succeeded(pi="pi_late", amount=1000))[1]["outcome"] == "credited"
    [refund] = [n for n in dbpay.unmatched(store) if n.kind == "refund_total"]
    code, _, err = run(capsys, "payments", "apply", str(refund.id), "--account", "euro", "--config", config)
    assert code == 2 and "was not credited to 'euro'" in err
    code, out, _ = run(capsys, "payments", "apply", str(refund.id), "--account", "acme", "--json", "--config", config)
    assert code == 0 and json.loads(out)["outcome"] == "refunded"
    assert balance(store, "acme") == M("7.00")
