"""RunOptions carries run_job's keyword arguments whole: the same names, order and defaults."""

import dataclasses
import inspect

import pytest

from kdcore.jobs.run_options import RunOptions
from kdcore.jobs.runner import run_job


def test_run_options_mirror_run_jobs_keyword_arguments_and_defaults():
    params = [p for p in inspect.signature(run_job).parameters.values() if p.kind is p.KEYWORD_ONLY]
    fields = dataclasses.fields(RunOptions)
    assert [f.name for f in fields] == [p.name for p in params]
    assert [f.default for f in fields] == [p.default for p in params]


def test_run_options_are_frozen_and_replace_keeps_the_rest():
    opts = RunOptions(run_id="r1", resume=True, use_store=False)
    moved = dataclasses.replace(opts, pair="p")  # type: ignore[arg-type]
    assert (moved.run_id, moved.resume, moved.use_store, moved.pair) == ("r1", True, False, "p")
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.run_id = "r2"  # type: ignore[misc]
