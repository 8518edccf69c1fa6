"""The method table (kdcore.methods): common checks over every entry, each step against its tested
loss, bad input named plainly, and a toy method registered in one place and run from the CLI and
from the Distill form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdcore.cli import main
from kdcore.jobs import JobConfig, RunStore
from kdcore.jobs.form import config_from_form
from kdcore.jobs.objectives import compute_loss
from kdcore.methods import (
    ALIASES,
    TASKS,
    Method,
    Param,
    StepTensors,
    all_methods,
    canonical_name,
    get_method,
    methods_for,
    register_method,
    unregister_method,
)
from kdcore.methods.params import parse_text
from kdcore.validation import InvalidParameterError
from tests.helpers.menus import LM_METHODS
from tests.helpers.toys import TOY

METHODS = [m.name for m in all_methods()]
MAIN = str(Path(__file__).resolve().parents[1] / "app" / "main.py")


# ---- common checks over every entry ---------------------------------------------------------------


def _required_params(method: Method) -> dict:
    """Values for the parameters a method requires (a layer map over the tiny batch's features)."""
    return {p.name: {"a": "b"} for p in method.params if p.required}


def _batch(method: Method) -> StepTensors:
    """A tiny batch of the method's first task, with features or attention maps when it reads them."""
    g = torch.Generator().manual_seed(0)
    task = method.tasks[0]
    shape = (2, 3, 7) if task == "causal_lm" else (4, 5)
    s, t = torch.randn(*shape, generator=g).requires_grad_(), torch.randn(*shape, generator=g)
    if task == "causal_lm":
        y = torch.randint(0, 7, (2, 3), generator=g)
        y[:, 0] = -100
    elif task == "multilabel":
        y = (torch.rand(4, 5, generator=g) > 0.5).float()
    else:
        y = torch.randint(0, 5, (4,), generator=g)
    b = StepTensors(task, s, t, y)
    if method.uses_layers:  # the required layer map {"a": "b"} (conv maps), or the default one's layers
        layers = _required_params(method).get("layers") or method.defaults()["layers"]
        fshape = lambda name: (4, 6) if name == "pooled" else (4, 2, 3, 3)  # noqa: E731  (pooled: [B, D])
        b.student_feats = {a: torch.randn(*fshape(a), generator=g).requires_grad_() for a in layers}
        b.teacher_feats = {t: torch.randn(*fshape(t), generator=g) for t in layers.values()}
    if method.name == "byot":  # its exits are built by the runner's job (kdcore.jobs.byot_job): here, by hand
        from kdcore.exits import EXITS_KEY, ExitHeads

        b.student_feats = {n: torch.randn(4, 2, 3, 3, generator=g).requires_grad_() for n in ("a", "b")}
        b.projectors = torch.nn.ModuleDict({EXITS_KEY: ExitHeads.build(b.student_feats, ["a", "b"], 5)})
    if method.name == "hybrid":  # its logits on the teacher's completions come from the sequence job: here, by hand
        from kdcore.methods.sequence import SEQ_LOGITS, SEQ_TARGETS

        b.extras = {SEQ_LOGITS: torch.randn(*shape, generator=g).requires_grad_(), SEQ_TARGETS: y.clone()}
    if method.needs_attention:
        causal = torch.ones(3, 3, dtype=torch.bool).tril()
        att = lambda: torch.softmax(torch.randn(2, 1, 3, 3, generator=g).masked_fill(~causal, -1e9), -1)  # noqa: E731
        b.student_attn, b.teacher_attn = [att().requires_grad_()], [att()]
    return b


@pytest.mark.parametrize("name", METHODS)
def test_every_entry_is_complete(name):
    m = get_method(name)
    assert m.help and m.section and ("METHODS.md" in m.section or "methods/" in m.section)
    assert m.tasks and set(m.tasks) <= set(TASKS)
    fns = m.functions()
    assert callable(fns["loss"]) and all(callable(f) for f in fns["also"])
    assert callable(fns.get("components", len))
    for alias in m.aliases:
        assert get_method(alias) is m and ALIASES[alias] == name
    for p in m.params:
        assert p.help, p.name
        assert p.problems(p.default, p.name) == [] or p.required, (p.name, p.default)
    if m.takes("temperature"):
        assert m.default_temperature > 0 and m.param("temperature").shared


@pytest.mark.parametrize("name", METHODS)
def test_every_entry_validates_with_its_defaults_and_lists_its_parameters(name, capsys):
    m = get_method(name)
    assert JobConfig(objective=name, params=_required_params(m)).problems() == []
    assert main(["methods", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out)["methods"] if r["name"] == name)
    assert row["aliases"] == list(m.aliases) and row["tasks"] == list(m.tasks) and row["section"] == m.section
    assert [(p["name"], p["default"], p["range"]) for p in row["params"]] == [
        (p.name, p.default, p.range_text()) for p in m.params
    ]


@pytest.mark.parametrize("name", METHODS)
def test_every_step_gives_finite_scalar_components_and_gradients(name):
    m = get_method(name)
    cfg = JobConfig(objective=name, params=_required_params(m)).validate()
    batch = _batch(m)
    total, comps = compute_loss(cfg.resolved_terms(), cfg.resolved_ce_weight(), batch)
    assert comps and all(v.dim() == 0 and torch.isfinite(v) for v in comps.values())
    total.backward()
    grads = [x.grad for x in (batch.student_logits, *batch.student_feats.values(), *(batch.student_attn or []))]
    assert any(gr is not None and gr.abs().sum() > 0 for gr in grads)
    assert all(gr is None or torch.isfinite(gr).all() for gr in grads)


def test_the_tasks_menu_and_the_choices_match_the_tested_functions():
    from kdcore.divergences import KINDS
    from kdcore.losses import RULES

    assert get_method("cakd").param("rule").choices == tuple(RULES)
    assert get_method("token").param("kind").choices == tuple(KINDS)
    assert [m.name for m in methods_for("causal_lm")] == LM_METHODS
    from kdcore.losses import GKD_DIVERGENCES

    assert get_method("gkd").param("divergence").choices == GKD_DIVERGENCES
    assert "token" not in [m.name for m in methods_for("classification")]


# ---- each step is its tested loss ---------------------------------------------------------------------


def _loss(objective: str, batch: StepTensors, **kw) -> torch.Tensor:
    cfg = JobConfig(objective=objective, **kw).validate()
    return compute_loss(cfg.resolved_terms(), cfg.resolved_ce_weight(), batch)[0]


def test_logit_steps_equal_their_tested_losses():
    import torch.nn.functional as F

    from kdcore.losses import cakd_loss, dkd_loss, kd_loss, label_smoothing_loss, strong_set

    b = _batch(get_method("kd"))
    s, t, y = b.student_logits, b.teacher_logits, b.targets
    torch.testing.assert_close(_loss("kd", b, temperature=3.0, lam=0.7), kd_loss(s, t, y, temperature=3.0, lam=0.7))
    torch.testing.assert_close(_loss("ls", b, params={"eps": 0.2}), label_smoothing_loss(s, y, eps=0.2))
    torch.testing.assert_close(
        _loss("dkd", b, params={"beta": 2.0}),
        dkd_loss(s, t, y, temperature=4.0, alpha=1.0, beta=2.0) + F.cross_entropy(s, y),
    )
    strong = strong_set(t, rule="topk", k=2, temperature=4.0)
    torch.testing.assert_close(
        _loss("cakd", b, ce_weight=0.0, params={"rule": "topk", "k": 2, "alpha": 0.5}),
        cakd_loss(s, t, strong, temperature=4.0, alpha=0.5, beta=1.0),
    )


def test_feature_and_token_steps_equal_their_tested_losses():
    from kdcore.divergences import divergence_loss
    from kdcore.losses import feature_cosine_loss, feature_l2_loss

    b = _batch(get_method("feature_l2"))
    fs, ft = b.student_feats["a"], b.teacher_feats["b"]
    for cosine, fn in ((True, feature_cosine_loss), (False, feature_l2_loss)):
        got = _loss("feature_l2", b, ce_weight=0.0, params={"layers": {"a": "b"}, "cosine": cosine})
        torch.testing.assert_close(got, fn(fs, ft))
    lm = _batch(get_method("token"))
    want = divergence_loss(lm.student_logits, lm.teacher_logits, "jsd", mask=lm.targets != -100, beta=0.3)
    torch.testing.assert_close(_loss("token", lm, ce_weight=0.0, params={"kind": "jsd", "beta": 0.3}), want)


# ---- old names and bad input ---------------------------------------------------------------------------


def test_old_names_load_as_aliases(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("objective: attention_transfer\nparams: {layers: {conv2: conv2}}\n")
    assert JobConfig.load(path).validate().resolved_terms()[0].name == "at"
    cfg = JobConfig(
        objective="sum",
        terms=[{"name": "hinton", "weight": 1.0, "params": {}}, {"name": "attention_kl", "weight": 0.5, "params": {}}],
    ).validate()
    assert [t.name for t in cfg.resolved_terms()] == ["kd", "attn_kl"]
    assert JobConfig(objective="label_smoothing").resolved_terms()[0].params == {"eps": 0.1}


def test_unknown_method_lists_the_known_ones_and_the_closest():
    with pytest.raises(InvalidParameterError, match="Known methods: kd, dkd, cakd") as e:
        get_method("dkdd")
    assert "Did you mean 'dkd'?" in str(e.value) and isinstance(e.value, ValueError)
    (problem,) = JobConfig(objective="normdk").problems()
    assert problem.startswith("'objective': Unknown method 'normdk'") and "Did you mean 'normkd'?" in problem
    (problem,) = JobConfig(objective="sum", terms=[{"name": "fitnets"}]).problems()
    assert problem.startswith("terms[0].name") and "Did you mean 'fitnet'?" in problem


def test_a_parameter_the_method_does_not_take_is_refused_by_name():
    (problem,) = JobConfig(objective="dkd", params={"gama": 2}).problems()
    assert problem == "params: method 'dkd' has no parameter 'gama' (it takes: temperature, alpha, beta, warmup)"
    with pytest.raises(InvalidParameterError, match=r"has no parameter 'eps' \(it takes: t_norm\)"):
        get_method("normkd").param("eps")


@pytest.mark.parametrize(
    "objective, params, needle",
    [
        ("dkd", {"alpha": -1}, "params.alpha must be a number in [0, inf); got -1"),
        ("token", {"beta": 1.0}, "params.beta must be a number in (0, 1); got 1.0"),
        ("cakd", {"rule": "top3"}, "params.rule must be one of target, topk, mass, labels; got 'top3'"),
        ("cakd", {"rule": "topk", "k": 0}, "params.k must be an integer in [1, inf); got 0"),
        ("kd", {"standardize": "yes"}, "params.standardize must be true or false; got 'yes'"),
        ("feature_l2", {}, "params.layers is required"),
    ],
)
def test_a_parameter_out_of_range_says_the_range(objective, params, needle):
    problems = JobConfig(objective=objective, params=params).problems()
    assert any(needle in p for p in problems), problems


def test_bad_entries_are_refused_at_registration():
    kd = get_method("kd")
    with pytest.raises(InvalidParameterError, match=r"the name\(s\) \['kd', 'hinton'\] are taken by \['kd'\]"):
        register_method(kd)
    bad = Method(
        "bad",
        kd.step,
        kd.loss,
        "h",
        "METHODS.md §1",
        tasks=("vision",),
        params=(Param("w", 5.0, "weight", low=0.0, high=1.0),),
    )
    with pytest.raises(InvalidParameterError) as e:
        register_method(bad)
    assert "tasks must be a non-empty subset" in str(e.value)
    assert "default of parameter 'w' must be a number in [0, 1]" in str(e.value)
    assert canonical_name("bad") is None


def test_form_text_is_parsed_or_explained():
    layers = get_method("at").param("layers")
    assert parse_text(layers, "conv1: conv2, conv2: conv3") == {"conv1": "conv2", "conv2": "conv3"}
    assert parse_text(layers, "  ") is None
    with pytest.raises(ValueError, match="typed like 'conv1: conv1, conv2: conv3'. Got 'conv1 conv2' instead"):
        parse_text(layers, "conv1 conv2")
    cfg = config_from_form("digits", "attention_transfer", {"layers": "conv2: conv2", "p": 2.0}, epochs=1)
    assert cfg.objective == "at" and cfg.params == {"layers": {"conv2": "conv2"}, "p": 2.0}
    cfg = config_from_form("digits", "kd", {"temperature": 2.0, "lam": 0.5, "standardize": False})
    assert (cfg.temperature, cfg.lam, cfg.params) == (2.0, 0.5, {"standardize": False})


def test_cli_bad_parameter_exits_2_naming_it(data_dir, capsys):
    assert main(["distill", "--pair", TOY, "--objective", "dkd", "--param", "gamma=1", "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["problems"] == [
        "params: method 'dkd' has no parameter 'gamma' (it takes: temperature, alpha, beta, warmup)"
    ]


# ---- a toy method, registered in one place, run from the CLI and from the Distill form ----------------


def toy_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, power: float = 2.0) -> torch.Tensor:
    """The toy's loss module: batch mean of Σ_c |q_c − p_c|^power (probabilities at T = 1)."""
    return (student_logits.softmax(-1) - teacher_logits.softmax(-1)).abs().pow(power).sum(-1).mean()


def _toy_step(b: StepTensors, p: dict) -> list:
    return [("toy", 1.0, toy_loss(b.student_logits, b.teacher_logits, power=p["power"]))]


TOY_METHOD = Method(
    "toy",
    _toy_step,
    toy_loss,
    "Toy: match the probabilities in L^p",
    "METHODS.md style, in this test",
    params=(Param("power", 2.0, "exponent p", low=1.0, high=4.0),),
    ce_default=True,
)


@pytest.fixture
def toy_method():
    register_method(TOY_METHOD)
    try:
        yield TOY_METHOD
    finally:
        unregister_method("toy")
    assert canonical_name("toy") is None and "toy" not in [m.name for m in all_methods()]


def test_a_toy_method_runs_from_the_cli(toy_method, data_dir, tmp_path, capsys):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(f"pair: '{TOY}'\nepochs: 1\nbatch_size: 128\nval_size: 64\nprobe_size: 16\n")
    assert main(["methods"]) == 0 and "toy: Toy: match the probabilities" in capsys.readouterr().out
    assert main(["distill", "--config", str(cfg), "--objective", "toy", "--param", "power=9", "--json"]) == 2
    assert "params.power must be a number in [1, 4]; got 9" in json.loads(capsys.readouterr().out)["error"]
    assert main(["distill", "--config", str(cfg), "--objective", "toy", "--param", "power=3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["state"] == "completed", out["error"]
    run = RunStore().get_run(out["run_id"])
    assert run["config"]["objective"] == "toy" and run["config"]["params"] == {"power": 3}
    steps = RunStore().metrics(out["run_id"], "step")
    assert {"toy", "ce"} <= set(steps.columns) and len(steps) == 2 and (steps["toy"] > 0).all()


def test_a_toy_method_runs_from_the_distill_form(toy_method, data_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from kdcore.jobs import worker

    monkeypatch.setattr(worker, "start_worker_process", lambda store=None: None)  # the test runs the queue itself
    at = AppTest.from_file(MAIN, default_timeout=180)
    at.session_state["sample_pair"] = "digits"
    at.run()
    at.switch_page("views/distill.py").run()
    assert not at.exception
    at.selectbox(key="job_objective").set_value("toy").run()
    at.number_input(key="job_toy_power").set_value(3.0)
    at.number_input(key="job_epochs").set_value(1)
    at.number_input(key="job_max_steps").set_value(2)
    at.number_input(key="job_train_size").set_value(64)
    next(b for b in at.button if "Start distillation" in str(b.proto.label)).click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    store = RunStore()
    (rid,) = store.list_runs()["id"]
    run = store.get_run(rid)
    assert run["state"] == "queued" and run["config"]["objective"] == "toy"
    assert run["config"]["params"] == {"power": 3.0}
    worker.run_queued(rid, store)
    assert store.get_run(rid)["state"] == "completed", store.get_run(rid)["error"]
    assert "toy" in store.metrics(rid, "step").columns


def test_reading_the_table_imports_no_torch():
    import subprocess
    import sys

    code = (
        "import sys, kdcore.cli, kdcore.methods as m; m.get_method('kd').describe(); sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1]).returncode == 0


def test_feature_l2_builds_its_projectors_from_the_table():
    from kdcore.jobs.objectives import build_projectors

    s, t = {"a.b": torch.zeros(2, 8)}, {"c": torch.zeros(2, 32)}

    def terms(projector: str) -> list:
        params = {"layers": {"a.b": "c"}, "projector": projector}
        return JobConfig(objective="fitnet", params=params).resolved_terms()

    mods = build_projectors(terms("auto"), s, t)
    assert list(mods) == ["a__b"] and isinstance(mods["a__b"], torch.nn.Linear)
    assert tuple(mods["a__b"].weight.shape) == (32, 8)
    assert len(build_projectors(terms("none"), s, t)) == 0
    assert len(build_projectors(terms("auto"), {"a.b": torch.zeros(2, 32)}, t)) == 0


def test_the_shared_temperature_and_lam_have_one_range_in_every_method():
    """kdcore.methods.params.temperature / lam: the job fields they share take the same values everywhere."""
    from kdcore.methods.params import lam, temperature

    assert (temperature(2.0).range_text(), lam(0.5).range_text()) == ("a number in (0, inf)", "a number in [0, 1]")
    assert temperature(2.0).problems(0.0, "T") and not temperature(2.0).problems(1e-3, "T")
    assert lam(0.5).problems(1.01, "λ") and not lam(0.5).problems(1.0, "λ")
    seen = {"temperature": 0, "lam": 0}
    for name in METHODS:
        for p in get_method(name).params:
            if p.name in seen:
                want = temperature(p.default, p.help) if p.name == "temperature" else lam(p.default, p.help)
                assert p == want, (name, p)
                seen[p.name] += 1
    assert seen["temperature"] > 10 and seen["lam"] > 5, seen
