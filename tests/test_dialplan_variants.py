"""The shipped dialplans: the one-carrier file sets fsbill_dial_string (so `routing: lcr` never
applies), the LCR file sets none; both take only authenticated traffic (caller ids are
spoofable). `fsbill simulate --no-dial-string` places calls as the LCR file does."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rig import Rig
from test_lcr import SELL, add_vendors, attempts

from fsbill.cli.main import main

DIALPLAN = Path(__file__).resolve().parent.parent / "dialplan"


def _actions(path: Path) -> list[tuple[str, str]]:
    ext = ET.parse(path).getroot().find("extension")
    assert ext is not None
    return [(a.get("application", ""), a.get("data", "")) for a in ext.iter("action")]


@pytest.mark.parametrize("name", ["fsbill_prepaid.xml", "fsbill_prepaid_lcr.xml"])
def test_both_shipped_dialplans_take_only_authenticated_traffic(name):
    root = ET.parse(DIALPLAN / name).getroot()
    [guard] = [c for c in root.iter("condition") if c.get("regex") == "any"]
    fields = {r.get("field"): r.get("expression") for r in guard.iter("regex")}
    assert fields == {"${sip_authorized}": "^true$", "${sip_acl_authed_by}": "."}
    assert [(a.get("application"), a.get("data")) for a in guard.iter("anti-action")] == [("respond", "403 Forbidden")]
    # the socket (and so fsbill) is reached only through the guard
    assert any(a.get("application") == "socket" for a in guard.iter("action"))
    text = (DIALPLAN / name).read_text(encoding="utf-8")
    assert "caller id" in text and "authenticated" in text


def test_the_lcr_dialplan_sets_no_dial_string_and_the_template_one_does():
    template = _actions(DIALPLAN / "fsbill_prepaid.xml")
    lcr = _actions(DIALPLAN / "fsbill_prepaid_lcr.xml")
    assert any(app == "set" and data.startswith("fsbill_dial_string=") for app, data in template)
    assert not any("fsbill_dial_string" in data for _, data in lcr)
    assert [a for a in lcr if a[0] == "socket"] == [a for a in template if a[0] == "socket"]


def _simulate(capsys, rig: Rig, *extra: str) -> dict:
    capsys.readouterr()
    code = main(
        ["simulate", "--server", f"127.0.0.1:{rig.port}", "--time-scale", "25", "--account", "acme"]
        + ["--talk", "5", "--json", *extra]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    return out


@pytest.mark.timeout(60)
def test_simulate_without_a_dial_string_exercises_lcr(sqlite_url, capsys, monkeypatch):
    monkeypatch.delenv("FSBILL_CONFIG", raising=False)
    rig = Rig(sqlite_url, time_scale=25, routing="lcr", deck=SELL)
    try:
        add_vendors(rig.store, now_us=rig.clock.now_us())
        rig.account("acme", "10.00")
        [lcr] = _simulate(capsys, rig, "--no-dial-string")["calls"]
        [dialled] = _simulate(capsys, rig)["calls"]  # the default dial string wins over the vendors
        rig.settled(2)
        assert lcr["result"] == dialled["result"] == "completed"
        assert [vendor for vendor, _, _ in attempts(rig.store, lcr["uuid"])][:1] == ["cheap"]
        assert attempts(rig.store, dialled["uuid"]) == []
    finally:
        rig.close()


def test_the_inbound_dialplan_marks_the_call_inbound_and_names_neither_payer_nor_bridge():
    """dialplan/fsbill_inbound.xml (docs/DIDS.md): the number's owner pays and the number's dial
    string is bridged, so the file sets neither; it marks the call inbound and hands it to the
    same socket as the prepaid dialplan, with the same 503 fallback."""
    inbound = _actions(DIALPLAN / "fsbill_inbound.xml")
    prepaid = _actions(DIALPLAN / "fsbill_prepaid.xml")
    assert inbound[0] == ("set", "fsbill_direction=inbound")
    assert [a for a in inbound if a[0] == "socket"] == [a for a in prepaid if a[0] == "socket"]
    assert inbound[-1] == ("respond", "503 Service Unavailable")
    assert not any(name in data for _, data in inbound for name in ("fsbill_account", "fsbill_dial_string"))
    # the prepaid dialplans never mark a call inbound: an on-net call to a DID stays outbound
    for name in ("fsbill_prepaid.xml", "fsbill_prepaid_lcr.xml"):
        assert not any("fsbill_direction" in data for _, data in _actions(DIALPLAN / name))
