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
    assert (cfg.epochs, cfg.lam) == (5, 0.5)  # the user's values kept
    assert (cfg.lr, cfg.schedule, cfg.train_size, cfg.temperature, cfg.teacher_cache) == (
        1e-2,
        "cosine",
        512,
        4.0,
        True,
    )
    assert "epochs" not in filled and "lam" not in filled and {"lr", "schedule", "train_size"} <= set(filled)


def test_t_and_lambda_only_for_the_recipes_own_objective():
    cfg, filled = with_recipe(JobConfig(pair="digits", objective="dkd"), R, user_set={"objective"})
    assert cfg.temperature is None and cfg.lam is None and "temperature" not in filled
    assert cfg.lr == 1e-2 and cfg.epochs == 50  # the budget still applies
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


def test_kdcore_reads_a_pairs_recipe_from_the_registry(monkeypatch):
    import sample_models
    from kdcore import pair_registry
    from kdcore.jobs.recipes import pair_recipe
    from tests.helpers.toys import toy_pair

    sample_models.register_pairs()
    assert pair_recipe("digits") is RECIPES["digits"] and pair_recipe("tests.helpers.toys:toy_pair") is None
    monkeypatch.setattr(pair_registry, "_REGISTRY", {})
    monkeypatch.setattr(pair_registry, "_DISCOVERY", {"done": True, "found": 0, "errors": []})
    pair_registry.register_pair("none", toy_pair)
    pair_registry.register_pair("mapping", toy_pair, recipe={"epochs": 3, "lr": 0.05})
    pair_registry.register_pair("typo", toy_pair, recipe={"epoch": 3})
    pair_registry.register_pair("text", toy_pair, recipe="50 epochs")
    assert pair_recipe("none") is None and pair_recipe("unknown") is None
    assert pair_recipe("mapping") == Recipe(epochs=3, lr=0.05)
    with pytest.raises(InvalidParameterError, match=r"unknown field\(s\) \['epoch'\]"):
        pair_recipe("typo")
    with pytest.raises(InvalidParameterError, match="Got str instead"):
        pair_recipe("text")


def test_form_defaults_are_the_recipe_for_its_objective():
    from kdcore.jobs.recipes import form_defaults

    assert form_defaults(R, "kd") == R.settings()
    dkd = form_defaults(R, "dkd")
    assert dkd["temperature"] is None and dkd["lam"] is None and dkd["epochs"] == 50 and dkd["objective"] == "dkd"
    assert form_defaults(None, "kd") == {k: JobConfig().to_dict()[k] for k in R.settings()}


def test_config_from_form_fills_what_the_form_leaves_out():
    from kdcore.jobs.form import config_from_form

    cfg = config_from_form("digits", "kd", {"temperature": None, "lam": 0.5}, recipe=R, epochs=3)
    assert (cfg.epochs, cfg.lam, cfg.temperature, cfg.lr, cfg.schedule, cfg.teacher_cache) == (
        3,
        0.5,
        4.0,
        1e-2,
        "cosine",
        True,
    )
    plain = config_from_form("digits", "kd", {"temperature": None, "lam": 0.5}, epochs=3)
    assert (plain.temperature, plain.lr, plain.schedule) == (None, 1e-3, "constant")


def test_the_workshop_preset_is_kd_and_the_student_alone_on_one_budget():
    from kdcore.jobs.recipes import workshop_configs

    kd, alone = workshop_configs("digits", R, seed=2, device="cpu")
    budget = ("epochs", "train_size", "batch_size", "lr", "schedule", "seed", "max_steps")
    assert {k: getattr(kd, k) for k in budget} == {k: getattr(alone, k) for k in budget}
    assert (kd.objective, kd.temperature, kd.lam, kd.epochs, kd.seed) == ("kd", 4.0, 0.9, 50, 2)
    assert (alone.objective, alone.temperature, alone.lam, alone.teacher_cache) == ("ce", None, None, False)
    assert kd.name != alone.name and "alone" in alone.name
    kd, alone = workshop_configs("mine", None)
    assert (kd.objective, kd.lr, alone.objective, alone.lr) == ("kd", 1e-3, "ce", 1e-3)
