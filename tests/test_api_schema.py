"""A property-based run (schemathesis) over the served OpenAPI document against the live API with
an admin token: no request it generates gets a 5xx, and no response contradicts the document
(status codes, content types, headers, bodies). Schema-valid requests the billing rules refuse
(a zero top-up, closing an account that holds money) are 400s by design, so schemathesis's
positive_data_acceptance check is left out; every other check runs. Bounded: a few examples
per operation, a fixed seed, one worker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from api_rig import ApiRig

from fsbill.api.app import ROUTES

MAX_EXAMPLES = 10


def _schemathesis() -> str:
    here = Path(sys.executable).with_name("st")
    found = str(here) if here.exists() else shutil.which("st")
    if not found:
        pytest.skip("schemathesis is not installed (pip install -e '.[test]')")
    return found


@pytest.mark.timeout(240)
def test_the_api_keeps_its_openapi_document_under_property_based_requests(tmp_path):
    st = _schemathesis()
    rig = ApiRig(f"sqlite:///{tmp_path}/api.db").seed()
    try:
        run = subprocess.run(
            [
                st,
                "run",
                f"http://127.0.0.1:{rig.port}/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {rig.tokens['admin']}",
                "--checks",
                "all",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                "22",
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--request-timeout",
                "30",
                "--no-color",
                "--output-sanitize",
                "true",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
            timeout=220,
        )
    finally:
        rig.close()
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
    assert f"Tested: {len(ROUTES)}" in run.stdout, run.stdout[-3000:]  # every operation was exercised
