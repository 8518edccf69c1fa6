"""The run store's errors, apart from store.py so that modules it uses (workspace.py) can raise them."""

from __future__ import annotations


class StoreError(RuntimeError):
    """The run store could not be written or read (read-only or full disk, missing run, ...)."""


class IntegrityError(StoreError):
    """A file of the store does not match the sha256 recorded when it was written (or is missing)."""
