"""kdcore.cli_values.number_list: the comma-separated number flags of `python -m kdcore protocol/compare/experiment`."""

import random

import pytest

from kdcore.cli_values import number_list


def test_random_lists_read_back_with_blanks_and_spaces_skipped():
    rng = random.Random(3)
    for _ in range(20):
        ints = [rng.randint(-50, 50) for _ in range(rng.randint(0, 6))]
        floats = [rng.uniform(-5, 5) for _ in range(rng.randint(0, 6))]
        assert number_list("--seeds", " , ".join(map(str, ints)) + ",,", int) == ints
        assert number_list("--lams", ",".join(f" {x!r} " for x in floats), float) == floats
    assert number_list("--seeds", None, int) == [] and number_list("--seeds", "", int) == []


@pytest.mark.parametrize(("text", "kind", "what"), [("0,a,2", int, "integers"), ("1.5,x", float, "numbers")])
def test_a_bad_item_names_the_flag_the_value_and_the_item(text, kind, what):
    with pytest.raises(ValueError) as err:
        number_list("--temperatures", text, kind)
    msg = str(err.value)
    bad = text.split(",")[1]
    assert msg.startswith(f"--temperatures expects comma-separated {what} (e.g. --temperatures 0,1,2)")
    assert repr(text) in msg and repr(bad) in msg


def test_a_float_is_not_an_integer():
    with pytest.raises(ValueError, match="'1.5' is not one"):
        number_list("--seeds", "1,1.5", int)


def test_budget_flags_parse_to_the_fields_given_and_only_those():
    import argparse

    from kdcore.cli_values import BUDGET_FLAGS, add_budget_flags, budget_from_args

    p = argparse.ArgumentParser()
    add_budget_flags(p, BUDGET_FLAGS, help="h")
    args = p.parse_args(["--max-steps", "7", "--lr", "0.5", "--schedule", "cosine"])
    assert budget_from_args(args, BUDGET_FLAGS) == {"max_steps": 7, "lr": 0.5, "schedule": "cosine"}
    assert budget_from_args(p.parse_args([]), BUDGET_FLAGS) == {}
    with pytest.raises(SystemExit):
        p.parse_args(["--epochs", "1.5"])  # int flags refuse a float


def test_compare_and_experiment_take_the_shared_budget_flags():
    from kdcore.cli import build_parser
    from kdcore.cli_values import BUDGET_FLAGS

    parser = build_parser()
    every = [x for flag, _, kind in BUDGET_FLAGS for x in (flag, "3" if kind is not str else "cpu")]
    want = {dest: (3 if kind is int else 3.0 if kind is float else "cpu") for _, dest, kind in BUDGET_FLAGS}
    compare = parser.parse_args(["compare", "--pair", "digits", "--methods", "kd", *every, "--optimizer", "adam"])
    plan = parser.parse_args(["experiment", "plan", "--pair", "digits", *every])
    for args in (compare, plan):
        assert {dest: getattr(args, dest) for dest in want} == want
    assert compare.optimizer == "adam"
