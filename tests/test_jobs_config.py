"""JobConfig: round-trips, defaults, and every problem listed at once."""

import json

import pytest

from kdcore.jobs.config import OBJECTIVES, ConfigError, JobConfig, LossTerm


def _full_config() -> JobConfig:
    return JobConfig(
        pair="digits",
        objective="sum",
        temperature=3.0,
        lam=None,
        ce_weight=0.5,
        terms=[
            LossTerm("kd", 1.0, {"lam": 0.7}),
            LossTerm("feature_l2", 0.1, {"layers": {"a.b": "c"}}),
            LossTerm("cakd", 0.5, {"rule": "topk", "k": 3}),
        ],
        train_size=100,
        val_size=50,
        optimizer="sgd",
        lr=0.05,
        schedule="cosine",
        warmup_steps=3,
        epochs=4,
        max_steps=30,
        batch_size=16,
        seed=7,
        device="auto",
        teacher_cache=True,
        cache_top_k=5,
        grad_clip=1.0,
        name="x",
    )


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_round_trip_through_json_and_yaml(fmt, tmp_path):
    cfg = _full_config().validate()
    text = cfg.to_json() if fmt == "json" else cfg.to_yaml()
    back = JobConfig.from_json(text) if fmt == "json" else JobConfig.from_yaml(text)
    assert back == cfg
    path = tmp_path / f"c.{'yml' if fmt == 'yaml' else 'json'}"
    cfg.save(path)
    assert JobConfig.load(path) == cfg
    assert json.loads(JobConfig.load(path).to_json()) == json.loads(cfg.to_json())


def test_every_problem_is_listed_before_anything_runs():
    cfg = JobConfig(
        objective="kdd",
        temperature=-1,
        lam=1.5,
        epochs=0,
        batch_size=0,
        lr=0,
        optimizer="rmsprop",
        device="tpu",
        schedule="warm",
    )
    with pytest.raises(ConfigError) as e:
        cfg.validate()
    text = str(e.value)
    assert len(e.value.problems) == 9
    for word in (
        "'objective'",
        "'temperature'",
        "'lam'",
        "'epochs'",
        "'batch_size'",
        "'lr'",
        "'optimizer'",
        "'device'",
        "'schedule'",
    ):
        assert word in text
    assert isinstance(e.value, ValueError)


def test_objective_parameters_are_checked():
    probs = JobConfig(objective="cakd", params={"rule": "topk", "gamma": 1}).problems()
    assert any("gamma" in p for p in probs) and any(".k" in p for p in probs)
    assert any("layers" in p for p in JobConfig(objective="feature_l2").problems())
    assert any("kind" in p for p in JobConfig(objective="token", params={"kind": "xkl"}).problems())
    assert any("beta" in p for p in JobConfig(objective="token", params={"kind": "jsd", "beta": 1.0}).problems())
    assert any("terms" in p for p in JobConfig(objective="sum").problems())
    assert any("terms[0].name" in p for p in JobConfig(objective="sum", terms=[{"name": "nope"}]).problems())
    assert JobConfig(objective="sum", terms=[{"name": "kd", "weight": 1.0, "params": {}}]).problems() == []
    from kdcore.methods import get_method

    needs_layers = {"feature_l2", "at", "mgd", "famkd"}  # a required layer map: no default config
    assert needs_layers == {
        o for o in OBJECTIVES if o != "sum" and get_method(o).takes("layers") and get_method(o).param("layers").required
    }
    for obj in OBJECTIVES:
        if obj not in ("sum", *needs_layers):
            assert JobConfig(objective=obj).problems() == [], obj


def test_unknown_fields_are_rejected_by_name():
    with pytest.raises(ConfigError, match="unknown field 'epoch'"):
        JobConfig.from_dict({"epoch": 3})


def test_resolved_terms_fill_defaults():
    t = JobConfig(objective="kd").resolved_terms()
    assert [(x.name, x.weight, x.params["temperature"], x.params["lam"]) for x in t] == [("kd", 1.0, 4.0, 0.9)]
    assert JobConfig(objective="token").resolved_terms()[0].params["temperature"] == 1.0
    assert JobConfig(objective="dkd", temperature=2.0).resolved_terms()[0].params["temperature"] == 2.0
    assert (
        JobConfig(objective="dkd").resolved_ce_weight() == 1.0 and JobConfig(objective="kd").resolved_ce_weight() == 0.0
    )
    terms = _full_config().resolved_terms()
    assert [x.name for x in terms] == ["kd", "feature_l2", "cakd"] and terms[0].params["lam"] == 0.7
    assert terms[2].params["temperature"] == 3.0
