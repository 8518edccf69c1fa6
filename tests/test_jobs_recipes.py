"""kdcore.jobs.recipes: a recipe fills only the fields the user did not set; sample pairs carry one each."""
import pytest

from kdcore.jobs import JobConfig
from kdcore.jobs.recipes import Recipe, with_recipe
from kdcore.validation import InvalidParameterError
from sample_models import PAIRS
from sample_models.recipes import RECIPES

R = Recipe(objective="kd", temperature=4.0, lam=0.9, lr=1e-2, schedule="cosine", epochs=50, train_size=512)


def test_every_sample_pair_has_a_valid_recipe():
    assert set(RECIPES) == set(PAIRS)
    for name, recipe in RECIPES.items():
        cfg, filled = with_recipe(JobConfig(pair=name), recipe, user_set={"pair"})
        cfg.validate()
        assert cfg.objective == recipe.objective and cfg.epochs == recipe.epochs and "lr" in filled


def test_the_recipe_fills_only_what_the_user_did_not_set():
    cfg, filled = with_recipe(JobConfig(pair="digits", epochs=5, lam=0.5), R, user_set={"pair", "epochs", "lam"})
    assert (cfg.epochs, cfg.lam) == (5, 0.5)                                  # the user's values kept
    assert (cfg.lr, cfg.schedule, cfg.train_size, cfg.temperature, cfg.teacher_cache) == (1e-2, "cosine", 512, 4.0, True)
    assert "epochs" not in filled and "lam" not in filled and {"lr", "schedule", "train_size"} <= set(filled)


def test_t_and_lambda_only_for_the_recipes_own_objective():
    cfg, filled = with_recipe(JobConfig(pair="digits", objective="dkd"), R, user_set={"objective"})
    assert cfg.temperature is None and cfg.lam is None and "temperature" not in filled
    assert cfg.lr == 1e-2 and cfg.epochs == 50                                # the budget still applies
    alone, filled = with_recipe(JobConfig(pair="digits", objective="ce"), R, user_set={"objective"})
    assert alone.objective == "ce" and not alone.teacher_cache and "teacher_cache" not in filled


def test_apply_works_on_plain_fields():
    out = R.apply({"lr": 1e-3, "epochs": 3}, user_set={"epochs"})
    assert out["lr"] == 1e-2 and out["epochs"] == 3 and out["temperature"] == 4.0


def test_no_recipe_leaves_the_config_alone():
    cfg = JobConfig(pair="mine:factory")
    assert with_recipe(cfg, None, user_set=set()) == (cfg, [])


def test_bad_recipes_and_arguments_are_refused():
    with pytest.raises(InvalidParameterError, match="lr"):
        Recipe(lr=-1.0)
    with pytest.raises(InvalidParameterError, match="Recipe"):
        with_recipe(JobConfig(), {"lr": 1.0}, user_set=set())
    assert "λ 0.9" in R.describe() and "512 training samples" in R.describe()


def test_recipes_help_names_every_pair():
    from kdcore.jobs.recipes import recipes_help
    text = recipes_help(RECIPES)
    assert all(f"  {name}: " in text for name in RECIPES) and "do not set" in text
