"""Running `python -m kdcore ...` in this process and reading its JSON answer."""

from __future__ import annotations

import json
from typing import Any

from kdcore.cli import main


def cli_json(capsys: Any, *argv: str) -> tuple[int, dict]:
    """(exit status, the last stdout line read as JSON) of `python -m kdcore ARGV --json`."""
    capsys.readouterr()
    rc = main([*argv, "--json"])
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])
