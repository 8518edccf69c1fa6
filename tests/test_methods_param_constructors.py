"""The Param constructors choice() and flag() build the same Param as the spelled-out form."""

import pytest

from kdcore.methods import all_methods
from kdcore.methods.params import Param, choice, flag


def test_choice_is_a_choice_param():
    p = choice("order", "easy", "which samples first", ("easy", "anti", "random"))
    assert p == Param("order", "easy", "which samples first", kind="choice", choices=("easy", "anti", "random"))
    assert p.problems("anti", "order") == []
    assert p.problems("hard", "order") == ["order must be one of easy, anti, random; got 'hard'"]


def test_flag_is_a_bool_param():
    p = flag("balance", True, "class-balanced order")
    assert p == Param("balance", True, "class-balanced order", kind="bool")
    assert p.problems(False, "balance") == []
    assert p.problems(1, "balance") == ["balance must be true or false; got 1"]


@pytest.mark.parametrize("kind", ["choice", "bool"])
def test_registered_choice_and_bool_params_keep_their_fields(kind):
    """Every registered choice/bool parameter has a default among its allowed values."""
    params = [p for m in all_methods() for p in m.params if p.kind == kind]
    assert len(params) >= 5
    for p in params:
        assert p.problems(p.default, p.name) == [] or p.default is None, p
        if kind == "choice":
            assert isinstance(p.choices, tuple) and len(p.choices) >= 2, p
