"""A taken address on any of fsbill's listeners (the event socket, metrics, the CDR intake, the API) is
the same clean failure: exit 2, one line naming the setting and the address, no traceback."""

import os
import socket
import subprocess
import sys

import pytest

LISTENERS = ("listen", "metrics_listen", "cdr_intake.listen", "api.listen")


def _config(tmp_path, taken: str, which: str) -> str:
    listen = taken if which == "listen" else "127.0.0.1:0"
    metrics = taken if which == "metrics_listen" else "127.0.0.1:0"
    intake = taken if which == "cdr_intake.listen" else "127.0.0.1:0"
    api = taken if which == "api.listen" else "127.0.0.1:0"
    path = tmp_path / "fsbill.yaml"
    path.write_text(
        f"database: 'sqlite:///{tmp_path}/x.db'\n"
        f"listen: '{listen}'\n"
        f"metrics_listen: '{metrics}'\n"
        f"cdr_intake: {{listen: '{intake}', user: fsbill, password: s3cret}}\n"
        f"api: {{listen: '{api}'}}\n",
        encoding="utf-8",
    )
    return str(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("which", LISTENERS)
@pytest.mark.parametrize("json_errors", [False, True])
def test_a_taken_address_exits_2_naming_the_listener(tmp_path, which, json_errors):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    taken = f"127.0.0.1:{holder.getsockname()[1]}"
    env = {k: v for k, v in os.environ.items() if k != "FSBILL_CONFIG"}
    argv = [sys.executable, "-m", "fsbill", "serve", "--config", _config(tmp_path, taken, which)]
    try:
        p = subprocess.run(
            argv + (["--json"] if json_errors else []), capture_output=True, text=True, timeout=50, env=env
        )
    finally:
        holder.close()
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith(("error:", "{"))]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert f"{which}: cannot listen on {taken}" in lines[0]
    assert "internal error" not in p.stderr
