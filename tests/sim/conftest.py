"""Fixtures for the emulator's tests: a scaled clock, a Switch, a scripted app."""

from __future__ import annotations

import pytest
from scripted import ScriptedApp

from fsbill.clock import Clock
from fsbill.sim import Switch

SCALE = 20.0


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/sim/" in str(item.fspath).replace("\\", "/") and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(30))


@pytest.fixture
def clock():
    return Clock(SCALE)


@pytest.fixture
def switch(clock):
    # park_delay_s: the real time between `connect` and CHANNEL_PARK. The app sends `myevents`
    # right after the connect reply; on a machine this loaded (2 cores shared by many test
    # runs) 1 ms was sometimes not enough for it to arrive first, losing CHANNEL_PARK.
    sw = Switch(clock, park_delay_s=0.01)
    yield sw
    sw.close()


@pytest.fixture
def app_factory():
    apps = []

    def make(script):
        app = ScriptedApp(script)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()
