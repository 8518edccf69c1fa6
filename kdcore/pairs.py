"""`Pair` (kdcore/pair.py): a teacher, a student, optionally a student trained without a teacher, and
their dataset, checked when built; and the registry of pairs by name (`register_pair`,
`load_registered_pair`, `registered_pairs`: see kdcore/pair_registry.py). Both are imported from here.
"""

from kdcore.pair import Pair
from kdcore.pair_registry import (
    ENTRY_POINT_GROUP,
    PairEntry,
    discover_pairs,
    get_pair_loader,
    load_registered_pair,
    register_pair,
    registered_pairs,
    resolve_pair,
    unregister_pair,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Pair",
    "PairEntry",
    "discover_pairs",
    "get_pair_loader",
    "load_registered_pair",
    "register_pair",
    "registered_pairs",
    "resolve_pair",
    "unregister_pair",
]
