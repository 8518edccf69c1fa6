"""Shared test helpers: toy pairs (toys, doctor_toys), figure-dict readers (figdata), waits (waiting)."""
