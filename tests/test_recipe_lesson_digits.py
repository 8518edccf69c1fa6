"""The recipe lesson on digits: KD beats the student alone on the pair's recipe over seeds 0, 1, 2
(tests/helpers/recipe_lesson.py)."""

from pathlib import Path

import pytest

from sample_models.recipes import RECIPES
from tests.helpers.recipe_lesson import check_kd_beats_the_student_alone


@pytest.mark.slow
def test_kd_beats_the_student_alone_on_the_recipe_over_three_seeds(data_dir):
    check_kd_beats_the_student_alone("digits")


def test_every_recipe_has_its_lesson_file():
    """A recipe added to sample_models.recipes needs its own tests/test_recipe_lesson_<pair>.py."""
    here = Path(__file__).parent
    assert sorted(p.stem.removeprefix("test_recipe_lesson_") for p in here.glob("test_recipe_lesson_*.py")) == sorted(
        RECIPES
    )
