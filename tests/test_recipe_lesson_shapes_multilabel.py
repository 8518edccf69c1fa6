"""The recipe lesson on shapes_multilabel: KD beats the student alone on the pair's recipe over seeds 0, 1, 2
(tests/helpers/recipe_lesson.py)."""

import pytest

from tests.helpers.recipe_lesson import check_kd_beats_the_student_alone


@pytest.mark.slow
def test_kd_beats_the_student_alone_on_the_recipe_over_three_seeds(data_dir):
    check_kd_beats_the_student_alone("shapes_multilabel")
