"""tests/parallel.py's last line: the files passed, and the tests passed, failed and skipped over
all of them, read from each file's pytest summary line."""

from parallel import counted, final_line, plugin_args


def test_counts_come_from_the_summary_line():
    out = "....\n..s.\n3 failed, 1330 passed, 1 skipped, 2 warnings in 41.20s\n"
    assert counted(out) == {"passed": 1330, "failed": 3, "skipped": 1}
    assert counted("=== 12 passed in 3.01s ===") == {"passed": 12, "failed": 0, "skipped": 0}
    assert counted("1 passed, 2 errors, 1 xfailed in 0.5s") == {"passed": 1, "failed": 2, "skipped": 1}
    # a test named "3 passed" in a failure's output is not the summary; only the last summary counts
    assert counted("E   assert '3 passed' == ''\n1 failed in 0.2s") == {"passed": 0, "failed": 1, "skipped": 0}
    assert counted("Segmentation fault") == {"passed": 0, "failed": 0, "skipped": 0}


def test_final_line_adds_up_every_file():
    results = [
        ("tests/test_a.py", 0, 1.0, "10 passed, 1 skipped in 1.0s"),
        ("tests/test_b.py", 1, 2.0, "1 failed, 4 passed in 2.0s"),
        ("tests/test_c.py", 0, 1.0, "7 passed in 1.0s"),
    ]
    line = final_line(results, 380.4, 3)
    assert line == "2 of 3 test files passed in 380 s: 21 passed, 1 failed, 1 skipped (3 at a time)"


def test_hypothesis_plugin_only_where_a_file_uses_it():
    assert plugin_args("tests/test_money.py") == []  # property-based tests
    assert plugin_args("tests/test_config.py") == ["-p", "no:hypothesispytest"]
