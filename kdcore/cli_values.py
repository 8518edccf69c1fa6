"""Flags shared by the commands of kdcore/cli.py and kdcore/jobs/experiment_cli.py: number lists, budgets."""

from __future__ import annotations

import argparse
from typing import Any


def number_list(flag: str, text: str | None, kind: type) -> list:
    """A comma-separated flag value as numbers of `kind` (int or float); empty items are skipped.

    A bad item raises ValueError naming the flag, the value and the item (the CLI prints it as one line)."""
    out = []
    for item in (v.strip() for v in (text or "").split(",")):
        if not item:
            continue
        try:
            out.append(kind(item))
        except ValueError:
            what = "integers" if kind is int else "numbers"
            raise ValueError(
                f"{flag} expects comma-separated {what} (e.g. {flag} 0,1,2). Got {text!r}: {item!r} is not one."
            ) from None
    return out


# the budget flags of `experiment ...` and `compare` (flag, JobConfig field, type); compare adds --optimizer
BUDGET_FLAGS = (
    ("--epochs", "epochs", int),
    ("--max-steps", "max_steps", int),
    ("--train-size", "train_size", int),
    ("--val-size", "val_size", int),
    ("--batch-size", "batch_size", int),
    ("--lr", "lr", float),
    ("--schedule", "schedule", str),
    ("--device", "device", str),
)


def add_budget_flags(p: argparse.ArgumentParser, flags: tuple, *, help: str) -> None:
    """One optional flag per (flag, field, type) of `flags`, each with `help`."""
    for flag, dest, kind in flags:
        p.add_argument(flag, dest=dest, type=kind, help=help)


def budget_from_args(args: argparse.Namespace, flags: tuple) -> dict[str, Any]:
    """{field: value} of the budget flags given (those left unset are not in it)."""
    return {dest: getattr(args, dest) for _, dest, _ in flags if getattr(args, dest, None) is not None}
