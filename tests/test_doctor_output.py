"""The doctor's outputs: the stable JSON form, the CLI, the evidence figures, kdcore.metrics, the page."""

import json
from pathlib import Path

import pytest
import torch

from analyses.doctor import figure, severity_counts_figure
from kdcore.cli import main
from kdcore.doctor import CHECK_IDS, FigureData, Finding, Report
from kdcore.jobs import JobConfig, RunStore, run_job
from kdcore.metrics import accuracy, disagreement, expected_calibration_error, reliability_bins
from tests.helpers.doctor_toys import CALIBRATED
from tests.helpers.ece_reference import ece_numpy

PAGE = str(Path(__file__).resolve().parents[1] / "app" / "views" / "doctor.py")


@pytest.fixture
def broken_run(data_dir):
    """A real run with two problems: lr far too low (flat loss) and λ ≈ 0 (negligible KD term)."""
    torch.set_num_threads(1)
    res = run_job(
        JobConfig(
            pair=CALIBRATED,
            objective="kd",
            lam=0.002,
            lr=1e-7,
            epochs=3,
            batch_size=32,
            train_size=96,
            checkpoints=1,
            val_size=128,
            probe_size=32,
        ),
        store=RunStore(),
    )
    return res.run_id


def test_cli_json_is_the_documented_schema(broken_run, capsys):
    assert main(["doctor", broken_run, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["run_id", "findings", "checks"] and out["run_id"] == broken_run
    assert list(out["checks"]) == list(CHECK_IDS)
    ids = [f["id"] for f in out["findings"]]
    assert {"optim.lr_scale", "optim.not_decreasing", "balance.kd_negligible"} <= set(ids)
    for f in out["findings"]:
        assert list(f) == ["id", "severity", "title", "evidence", "fix"]
        assert f["severity"] in ("error", "warning", "info") and f["id"] in CHECK_IDS
        assert all(v is None or isinstance(v, (int, float, str, bool)) for v in f["evidence"].values())
    ranks = [("error", "warning", "info").index(f["severity"]) for f in out["findings"]]
    assert ranks == sorted(ranks)


def test_cli_text_output_and_bad_run_id(broken_run, capsys):
    assert main(["doctor", broken_run]) == 0
    text = capsys.readouterr().out
    assert "[WARNING]" in text and "fix:" in text and "balance.kd_negligible" in text
    assert main(["doctor", "no-such-run", "--json"]) == 2
    assert "no run with id" in json.loads(capsys.readouterr().out)["error"]


def test_finding_json_rounds_and_nulls():
    f = Finding("x.y", "info", "t", {"a": 1 / 3, "b": float("nan"), "c": torch.tensor(2.5), "d": True, "e": 3}, "fix")
    assert f.to_dict()["evidence"] == {"a": 0.333333, "b": None, "c": 2.5, "d": True, "e": 3}
    with pytest.raises(ValueError, match="severity"):
        Finding("x", "fatal", "t", {}, "f")
    r = Report("id", [f], {"x.y": "ran"})
    assert json.loads(json.dumps(r.to_dict()))["findings"][0]["id"] == "x.y"


# ---- figures --------------------------------------------------------------------------------------


def test_line_figure_has_a_trace_per_series_and_the_marker():
    d = FigureData(
        "lines",
        "T sweep",
        [1, 2, 4],
        {"a": [0.9, 0.7, 0.5], "b": [0.1, 0.3, float("nan")]},
        x_title="temperature T",
        y_title="value",
        marker_x=2.0,
        log_x=True,
    )
    fig = figure(Finding("s", "warning", "t", {"v": 1}, "f", d)).to_dict()
    assert [t["type"] for t in fig["data"]] == ["scatter", "scatter"]
    assert fig["layout"]["xaxis"]["type"] == "log" and fig["layout"]["xaxis"]["title"]["text"] == "temperature T"
    assert fig["layout"]["shapes"][0]["x0"] == 2.0
    assert fig["data"][1]["y"][2] is None


def test_bar_and_reliability_figures():
    bars = figure(FigureData("bars", "g", ["start", "end"], {"KD part": [1, 2], "CE part": [3, 4]})).to_dict()
    assert [t["type"] for t in bars["data"]] == ["bar", "bar"] and bars["layout"]["barmode"] == "group"
    rel = figure(
        FigureData(
            "reliability", "r", [0.25, 0.75], {"accuracy": [0.2, 0.6], "confidence": [0.3, 0.8], "count": [5, 10]}
        )
    ).to_dict()
    assert [t["type"] for t in rel["data"]] == ["bar", "scatter", "scatter"]
    assert list(rel["data"][2]["x"]) == [0, 1]  # the diagonal
    assert [t["type"] for t in severity_counts_figure({"error": 1}).to_dict()["data"]] == ["bar"]


def test_figure_rejects_bad_input():
    with pytest.raises(ValueError, match="Finding with a figure"):
        figure(Finding("a", "info", "t", {}, "f"))
    with pytest.raises(ValueError, match="has 1 values for 2"):
        figure(FigureData("lines", "t", [1, 2], {"a": [1]}))
    with pytest.raises(ValueError, match="kind"):
        figure(FigureData("pie", "t", [1], {"a": [1]}))


# ---- kdcore.metrics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n, c", [(7, 2), (200, 5), (1000, 10)])
def test_ece_matches_numpy_and_analyses(n, c):
    from analyses.calibration import expected_calibration_error as analyses_ece

    logits = torch.randn(n, c, dtype=torch.float64) * 2
    p = torch.softmax(logits, -1)
    y = torch.randint(0, c, (n,))
    ours = expected_calibration_error(p, y)
    assert ours == pytest.approx(ece_numpy(p.numpy(), y.numpy()), abs=1e-12)
    assert ours == pytest.approx(analyses_ece(p, y), abs=1e-12)
    bins = reliability_bins(p, y, n_bins=10)
    assert float(bins["count"].sum()) == n


def test_ece_identities():
    y = torch.tensor([0, 1, 2, 3])
    assert expected_calibration_error(torch.eye(4, dtype=torch.float64), y) == 0.0  # confident and right
    wrong = torch.eye(4, dtype=torch.float64)[[1, 2, 3, 0]]
    assert expected_calibration_error(wrong, y) == pytest.approx(1.0)  # confident and wrong
    assert expected_calibration_error(torch.full((4, 4), 0.25), y) == pytest.approx(0.0)  # 25 % sure, right 1 time in 4


def test_accuracy_and_disagreement():
    s = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(s, torch.tensor([0, 0, -100])) == 0.5  # the -100 row is left out
    assert disagreement(s, torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="'probs'"):
        expected_calibration_error(torch.randn(3, 2), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="same shape"):
        disagreement(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="every row"):
        accuracy(s, torch.full((3,), -100))


# ---- the page ----------------------------------------------------------------------------------------


def test_doctor_page_shows_the_findings_of_a_broken_run(broken_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("KDWB_ALLOW_MODULES", "1")  # the run's pair is a module:factory (tests.helpers)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="doctor_run").value == broken_run
    labels = [e.label for e in at.expander]
    assert any("negligible" in lbl for lbl in labels) and any("learning rate" in lbl for lbl in labels)
    assert any("Fix." in m.value for m in at.markdown)


def test_doctor_page_refuses_a_module_pair_run_while_module_loading_is_off(broken_run, monkeypatch):
    """A run of `distill --pair package.module:factory` imports that module when it is examined: the server
    does so only when started with module loading on; otherwise the page says why and keeps running."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.delenv("KDWB_ALLOW_MODULES", raising=False)
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any(f"Refused to load {CALIBRATED!r}" in e.value for e in at.error), [e.value for e in at.error]
    assert not any("negligible" in e.label for e in at.expander)  # nothing was diagnosed


def test_doctor_page_without_runs_says_what_to_do(data_dir):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception and any("No finished runs" in i.value for i in at.info)
