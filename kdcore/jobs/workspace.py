"""Workspaces of a shared workshop server: each participant's runs carry their workspace's name.

A `RunStore(workspace="ada")` sees only ada's runs and protocols (lists, and opening one by id), and
stamps the runs and protocols it creates with "ada"; `RunStore()` (no workspace) sees every run, as
the single-user app and the instructor view do. With `max_active=K` the store refuses to queue a run
when the workspace already has K runs queued or running (QueueLimitError), before anything is written.
The class leaderboard over the workspaces' runs is class_board.py.
"""

from __future__ import annotations

import re

from kdcore.jobs.store_errors import StoreError

NAME_MAX = 32
WORKSPACE_ENV = "KDWB_WORKSPACE"  # the workspace a `python -m kdcore experiment` process writes to
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class WorkspaceError(StoreError):
    """A workspace name is malformed, or a run or protocol of another workspace was asked for."""


class QueueLimitError(StoreError):
    """The workspace already has as many runs queued or running as it may."""

    def __init__(self, workspace: str, limit: int, active: int, adding: int = 1) -> None:
        self.workspace, self.limit, self.active, self.adding = workspace, limit, active, adding
        asked = "one more run" if adding == 1 else f"{adding} more runs"
        super().__init__(
            f"Workspace {workspace!r} may have at most {limit} runs queued or running at once; it has "
            f"{active}, so {asked} cannot be queued. Wait for one to finish, or cancel one (Distill page, "
            f"or `python -m kdcore runs cancel RUN_ID`); nothing was queued."
        )


def check_name(name: object) -> str:
    """A workspace name: 1 to NAME_MAX letters, digits, '-' or '_' (surrounding spaces dropped)."""
    text = name.strip() if isinstance(name, str) else name
    if not isinstance(text, str) or not text or len(text) > NAME_MAX or not _NAME.match(text):
        raise WorkspaceError(
            f"A workspace name is 1 to {NAME_MAX} letters, digits, '-' or '_' (no spaces), such as ada or "
            f"team_2. Got {name!r}. Choose a name of that form."
        )
    return text


def check_limit(limit: object) -> int | None:
    """A queue limit: None (no limit) or a positive integer."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(
            f"The queue limit of a workspace is a positive integer (runs queued or running at once) or None "
            f"for no limit. Got {limit!r}. Pass --max-queued 1 or more."
        )
    return limit


def foreign(kind: str, item_id: str, workspace: str) -> WorkspaceError:
    """The error for a run or protocol of another workspace (same words whether it exists or not)."""
    return WorkspaceError(
        f"There is no {kind} {item_id!r} in workspace {workspace!r}: a participant can open only the "
        f"{kind}s of their own workspace. Choose one from your lists, or ask the instructor."
    )
