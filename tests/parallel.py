"""Run the whole suite as several pytest processes at once, one test file per process.

Why not pytest-xdist: its workers talk to the controller over execnet threads, which the
suite's gevent monkey-patching (conftest.py: the sockets, the PostgreSQL driver and the
emulator all run on gevent) breaks inside the worker. Whole files per process also keep each
file's fixtures, ports and timing assumptions exactly as in a plain `pytest` run.

Many tests wait on a scaled real-time clock (restarts, leases, calls of several seconds), so
files run side by side even on two cores: the longest start first (what we measured, below),
then the rest by size. `FSBILL_TEST_JOBS` sets how many run at once (default 4: most files
wait on those clocks far more than they compute). Extra
arguments go to every pytest (e.g. `-x`, `-k pattern`). The last line gives the files passed and
the tests passed, failed and skipped over all of them. Exit status: 0 only if every file
passed; each failing file's output is printed whole.

    .venv/bin/python tests/parallel.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Seconds each took in a parallel run (4 at a time, 2 cores, 2026-12, the machine also busy with
# a compile): the longest start first, so the last process does not start a long file when the
# others are done. Files not listed start after these, the largest first.
MEASURED_S = {
    "tests/test_restart.py": 220,
    "tests/test_call_flows.py": 160,
    "tests/test_lcr.py": 120,
    "tests/test_enforcer.py": 115,
    "tests/test_dids.py": 95,
    "tests/test_api_schema.py": 95,
    "tests/test_charges.py": 70,
    "tests/test_cli_vendors.py": 70,
    "tests/test_multinode.py": 70,
    "tests/test_readme.py": 60,
    "tests/test_hostile_peers.py": 55,
    "tests/test_books.py": 55,
    "tests/test_workers.py": 55,
    "tests/test_rates_db.py": 55,
    "tests/test_payments_paypal.py": 45,
    "tests/test_management.py": 45,
    "tests/test_cli_accounts.py": 45,
    "tests/test_cdr_intake_hostile.py": 45,
    "tests/test_listen_clash.py": 40,
    "tests/test_ledger.py": 40,
    "tests/test_resellers_nodes.py": 40,
    "tests/test_recharge.py": 40,
    "tests/test_resellers_flows.py": 35,
    "tests/test_guards_flows.py": 35,
    "tests/test_migrations.py": 35,
    "tests/test_notices_db.py": 35,
    "tests/test_cli_manage.py": 35,
    "tests/test_cli_contract.py": 35,
    "tests/test_resellers_db.py": 30,
    "tests/test_esl_fuzz.py": 30,
    "tests/test_cli_config.py": 30,
    "tests/test_bundles_flows.py": 30,
    "tests/test_fx_db.py": 30,
    "tests/test_cli_deck_import.py": 30,
    "tests/test_cli_rates.py": 30,
    "tests/test_guards.py": 25,
    "tests/test_core_purity.py": 25,
    "tests/test_plans_cli.py": 25,
    "tests/test_payments_nodes.py": 25,
    "tests/test_cdr_export.py": 25,
    "tests/test_bench.py": 25,
    "tests/test_routing.py": 25,
    "tests/test_payments_stripe.py": 25,
    "tests/test_deck_replace.py": 25,
    "tests/test_db_outage_allow.py": 25,
    "tests/test_bundles_db.py": 25,
}


# pytest's closing line, e.g. "3 failed, 1330 passed, 1 skipped, 2 warnings in 41.20s".
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)\b")
_SUMMARY = re.compile(r"\d+ (passed|failed|skipped|errors?|xfailed|xpassed|deselected)\b.* in [\d.]+s")


def counted(output: str) -> dict[str, int]:
    """The tests a pytest run passed, failed and skipped, from its summary line (errors count as
    failed, xfailed as skipped). A file whose run printed no summary counts nothing here: its
    file is failed by its exit code."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    lines = [line for line in output.splitlines() if _SUMMARY.search(line)]
    if not lines:
        return counts
    for number, word in _COUNT.findall(lines[-1]):
        key = {"error": "failed", "errors": "failed", "xfailed": "skipped", "xpassed": "passed"}.get(word, word)
        if key in counts:
            counts[key] += int(number)
    return counts


def final_line(results: list[tuple[str, int, float, str]], elapsed_s: float, jobs: int) -> str:
    """ "56 of 56 test files passed in 380 s: 1333 passed, 0 failed, 1 skipped (3 at a time)"."""
    files_passed = sum(1 for _, code, _, _ in results if code == 0)
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for _, _, _, output in results:
        for key, n in counted(output).items():
            total[key] += n
    return (
        f"{files_passed} of {len(results)} test files passed in {elapsed_s:.0f} s: "
        f"{total['passed']} passed, {total['failed']} failed, {total['skipped']} skipped ({jobs} at a time)"
    )


def suite_files() -> list[str]:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").rglob("test_*.py"))
    return sorted(files, key=lambda f: (-MEASURED_S.get(f, 0), -(ROOT / f).stat().st_size))


def plugin_args(name: str) -> list[str]:
    """Hypothesis's pytest plugin imports all of Hypothesis at start-up (1.4 s of CPU per process
    on this machine, some 100 s over the suite): it is loaded only where a file uses it."""
    if "hypothesis" in (ROOT / name).read_text(encoding="utf-8"):
        return []
    return ["-p", "no:hypothesispytest"]


def main(argv: list[str]) -> int:
    jobs = int(os.environ.get("FSBILL_TEST_JOBS", "4"))
    queue = suite_files()
    running: dict[str, tuple[subprocess.Popen, Path, float]] = {}
    results: list[tuple[str, int, float, str]] = []
    cpu_s = 0.0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fsbill-tests-") as tmp:
        while queue or running:
            while queue and len(running) < jobs:
                name = queue.pop(0)
                log = Path(tmp) / (name.replace("/", "_") + ".log")
                with open(log, "wb") as out:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "pytest", "-q", *plugin_args(name), name, *argv],
                        cwd=ROOT,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                running[name] = (proc, log, time.monotonic())
            time.sleep(0.2)
            for name, (proc, log, t0) in list(running.items()):
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid == 0:
                    continue
                code = proc.returncode = os.waitstatus_to_exitcode(status)
                cpu = usage.ru_utime + usage.ru_stime  # its own and its waited-for children's
                cpu_s += cpu
                del running[name]
                output = log.read_text(errors="replace")
                summary = output.strip().splitlines()[-1] if output.strip() else "(no output)"
                elapsed = time.monotonic() - t0
                results.append((name, code, elapsed, output))
                print(
                    f"{'ok  ' if code == 0 else 'FAIL'} {name:<45} {elapsed:6.1f} s  cpu {cpu:5.1f} s  {summary}",
                    flush=True,
                )
    failed = [(name, output) for name, code, _, output in results if code != 0]
    for name, output in failed:
        print(f"\n===== {name} =====\n{output}", flush=True)
    elapsed_s = time.monotonic() - started
    print(f"\nCPU used by the files: {cpu_s:.0f} s ({cpu_s / elapsed_s:.2f} cores on average)", flush=True)
    print(final_line(results, elapsed_s, jobs), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
