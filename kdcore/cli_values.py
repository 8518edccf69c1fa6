"""Flag values of the command line (kdcore/cli.py, kdcore/jobs/experiment_cli.py)."""

from __future__ import annotations


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
