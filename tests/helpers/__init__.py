"""Shared test helpers: toy pairs (toys, doctor_toys, hf_pairs), short runs and jobs (runs), AppTest openers
(apptest), expected menus (menus), figure-dict readers (figdata), waits (waiting)."""
