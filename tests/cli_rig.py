"""The real `fsbill` command run in-process on a config file (what the CLI tests share): its exit
code and both output streams, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from fsbill.cli.main import main


class Cli:
    def __init__(self, capsys, config: Path) -> None:
        self.capsys = capsys
        self.config = str(config)

    def run(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        try:
            code = main([*argv, "--config", self.config])
        except SystemExit as exc:  # argparse usage errors
            code = exc.code
        out, err = self.capsys.readouterr()
        assert "Traceback" not in out + err
        return code, out, err

    def json(self, *argv: str):
        code, out, err = self.run(*argv, "--json")
        assert code == 0, err
        return json.loads(out)
