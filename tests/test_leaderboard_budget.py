"""The leaderboard's budget (kdcore.jobs.leaderboard): the pair's recipe lets every method that fits the pair
run (planned and checked, nothing trained), and an epoch override too small for some methods is refused with
the fewest epochs each needs.
"""

from __future__ import annotations

import pytest

# the methods of the classification table that do not fit the sample CNN pairs, whatever the budget:
# attention maps (transformers only) and sentence embeddings (encoders only)
NOT_FOR_CNNS = {"attn_kl", "embed_distill"}


@pytest.fixture(scope="module")
def pairs():
    from kdcore.jobs.resolve import resolve_pair

    return {name: resolve_pair(name) for name in ("digits", "shapes")}


# shapes is slow: each method's check (prepare_run) fingerprints the pair's data, ~0.15 s per method on shapes
@pytest.mark.parametrize("name", ["digits", pytest.param("shapes", marks=pytest.mark.slow)])
def test_the_recipe_budget_lets_every_fitting_method_run(pairs, name):
    from kdcore.jobs.leaderboard import _check_fits, _fit_problem, _plan, min_epochs
    from kdcore.jobs.recipes import pair_recipe
    from kdcore.methods import methods_for

    pair = pairs[name]
    methods = [m.name for m in methods_for(pair.dataset.task)]
    assert len(methods) >= 20 and NOT_FOR_CNNS <= set(methods)
    _, _, plan, _ = _plan(name, methods, [0], None)
    assert {cfg.epochs for _, cfg in plan} == {pair_recipe(name).epochs}  # one budget: the recipe's
    refused = {}
    for method, cfg in plan:
        problem = _fit_problem(method, cfg, pair)
        if problem is not None:
            refused[method] = problem
            assert min_epochs(method, cfg, pair) is None, problem  # more epochs would not help: not the budget
    assert set(refused) == NOT_FOR_CNNS, refused
    _check_fits([(m, c) for m, c in plan if m not in NOT_FOR_CNNS], pair)  # the leaderboard's own check passes


def test_a_too_small_epoch_override_says_the_fewest_epochs_each_method_needs(pairs):
    """pwkd: one epoch per width (4 widths); weight_distill: phase 1 and phase 2, one epoch each; education:
    one epoch per grade (3 grades)."""
    from kdcore.jobs.leaderboard import _check_fits, _plan
    from kdcore.methods import get_method
    from kdcore.validation import InvalidParameterError

    widths = get_method("pwkd").defaults("classification")["widths"]
    grades = len(get_method("education").defaults("classification")["ratios"])
    assert (len(widths), grades) == (4, 3)
    _, _, plan, _ = _plan("digits", ["kd", "pwkd", "weight_distill", "education"], [0], {"epochs": 1})
    with pytest.raises(InvalidParameterError) as err:
        _check_fits(plan, pairs["digits"])
    text = str(err.value)
    assert "[pwkd runs from epochs=4 on]" in text
    assert "[weight_distill runs from epochs=2 on]" in text
    assert "[education runs from epochs=3 on]" in text
    assert not [line for line in text.splitlines() if line.startswith("kd:")]  # classic KD fits one epoch
    assert "raise the epochs to at least 4" in text
    _, _, plan, _ = _plan("digits", ["pwkd", "weight_distill", "education"], [0], {"epochs": 4})
    _check_fits(plan, pairs["digits"])  # the minimum it named is enough
