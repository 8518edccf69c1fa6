"""What a run_job call asks of the run besides its config: where it is recorded, which run it is, who
hears of it, and whether it resumes. run_job bundles its keyword arguments into one RunOptions, which
the run's frame (runner.run_with_job) and the procedures (blockwise, pwkd, zskt, weight distillation)
pass along whole."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kdcore.jobs.reporting import Callback, Cancel
    from kdcore.jobs.store import RunStore
    from kdcore.pairs import Pair


@dataclass(frozen=True)
class RunOptions:
    """run_job's keyword arguments (see its docstring), unchanged."""

    store: RunStore | None = None  # None: RunStore() in $KDWB_HOME, unless use_store is False
    run_id: str | None = None  # an existing run to execute (queued) or to resume
    callback: Callback | None = None  # called with a dict per event
    cancel: Cancel | None = None  # a threading.Event or a callable; the job stops when it is set/true
    pair: Pair | None = None  # a Pair to use instead of resolving config.pair
    resume: bool = False
    use_store: bool = True
