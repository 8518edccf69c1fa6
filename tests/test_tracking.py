"""Runs in MLflow and TensorBoard (kdcore.jobs.tracking; issue 19 item 4): exports and live logs read
back with each back-end's own reader (MlflowClient, TensorBoard's EventAccumulator) and compared with
the run store read independently (RunStore.metrics -> plain float64); bad URIs and missing packages."""

import hashlib
import json
import math
import sys
from pathlib import Path

import pytest

from kdcore.cli import main
from kdcore.jobs.config import JobConfig
from kdcore.jobs.runner import run_job
from kdcore.jobs.store import RunStore
from kdcore.jobs.tracking import (
    LiveLogger,
    MlflowSink,
    TensorBoardSink,
    TrackingError,
    export_run_to,
    flat_params,
)

pytest.importorskip("mlflow", reason="pip install -e '.[mlflow]' (make setup installs it)")
pytest.importorskip("tensorboard", reason="pip install -e '.[tensorboard]' (make setup installs it)")

from mlflow import MlflowClient  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

CFG = JobConfig(
    pair="digits", epochs=1, max_steps=3, batch_size=32, train_size=256, val_size=128, seed=3, temperature=2.0
)


def _uri(path: Path) -> str:
    return path.resolve().as_uri()  # file:///... (a local MLflow file store)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One tiny digits run logged live to MLflow and TensorBoard: (store, run_id, root folder)."""
    root = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to use a file store
        store = RunStore(root / "kdwb")
        live = LiveLogger(store, [MlflowSink(_uri(root / "live_mlruns")), TensorBoardSink(root / "live_tb")])
        with live:
            result = run_job(CFG, store=store, callback=live.wrap(None))
        assert result.state == "completed", result.error
        yield store, result.run_id, root


@pytest.fixture(autouse=True)
def _file_store(monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


def _expected(store: RunStore, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """{"<level>/<name>": [(step, value)]} of every finite stored metric, read from the store directly."""
    out: dict[str, list[tuple[int, float]]] = {}
    for level in ("step", "epoch", "checkpoint"):
        df = store.metrics(run_id, level)
        for name in df.columns[2:]:
            for step, value in zip(df["step"].tolist(), df[name].astype("float64").tolist(), strict=True):
                if math.isfinite(value):
                    out.setdefault(f"{level}/{name.replace('|', '_')}", []).append((int(step), value))
    return out


def _mlflow_run(uri: str, run_id: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("KD Workbench")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.`kdw.run_id` = '{run_id}'")
    assert len(runs) == 1
    return client, runs[0]


def _mlflow_metrics(client, run) -> dict[str, list[tuple[int, float]]]:
    return {
        key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        for key in run.data.metrics
    }


def _tb_metrics(folder: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: sorted((e.step, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]}


def _close(got: dict, want: dict, rel: float) -> None:
    assert set(got) == set(want)
    for key, rows in want.items():
        assert [s for s, _ in got[key]] == [s for s, _ in rows], key
        assert [v for _, v in got[key]] == pytest.approx([v for _, v in rows], rel=rel, abs=1e-7), key


def test_flat_params_flattens_nested_fields_and_writes_lists_as_json():
    cfg = {"a": 1, "b": {"c": 2.5, "d": {"e": "x"}}, "f": [1, 2], "g": None, "h": True, "i": {}}
    assert flat_params(cfg) == {"a": 1, "b.c": 2.5, "b.d.e": "x", "f": "[1, 2]", "g": "null", "h": True, "i": "{}"}


def test_export_to_mlflow_reads_back_params_metrics_and_artifacts(logged, tmp_path):
    store, rid, _ = logged
    uri = _uri(tmp_path / "mlruns")
    export_run_to(store, rid, MlflowSink(uri))
    client, run = _mlflow_run(uri, rid)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.runName"] == rid
    config = store.get_run(rid)["config"]
    assert run.data.params["temperature"] == str(config["temperature"]) and run.data.params["pair"] == "digits"
    assert set(run.data.params) == set(flat_params(config))
    want = _expected(store, rid)
    assert {"step/loss", "epoch/val_acc"} <= set(want) and [s for s, _ in want["step/loss"]] == [1, 2, 3]
    _close(_mlflow_metrics(client, run), want, rel=1e-12)
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert names == {"config.json", "student.safetensors"}
    local = Path(client.download_artifacts(run.info.run_id, "student.safetensors", str(tmp_path)))
    weights = store.read_artifact(rid, "student.safetensors")
    assert hashlib.sha256(local.read_bytes()).hexdigest() == hashlib.sha256(weights).hexdigest()
    got = json.loads(Path(client.download_artifacts(run.info.run_id, "config.json", str(tmp_path))).read_text())
    assert got == config


def test_export_to_tensorboard_reads_back_scalars_config_and_hparams(logged, tmp_path, monkeypatch, capsys):
    store, rid, _ = logged
    monkeypatch.setenv("KDWB_HOME", str(store.root))
    assert main(["runs", "export", rid, "--to", "tensorboard", str(tmp_path / "tb"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["to"] == "tensorboard"
    _close(_tb_metrics(tmp_path / "tb" / rid), _expected(store, rid), rel=1e-6)  # TensorBoard keeps float32
    acc = EventAccumulator(str(tmp_path / "tb" / rid), size_guidance={"tensors": 0})
    acc.Reload()
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(text.strip("`\n"))["pair"] == "digits"
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    assert start.session_start_info.hparams["temperature"].number_value == store.get_run(rid)["config"]["temperature"]
    exp = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "epoch/val_acc" in {m.name.tag for m in exp.metric_infos}


def test_live_logging_equals_the_export(logged, tmp_path):
    store, rid, root = logged
    uri = _uri(tmp_path / "mlruns")
    export_run_to(store, rid, MlflowSink(uri))
    export_run_to(store, rid, TensorBoardSink(tmp_path / "tb"))
    live_client, live = _mlflow_run(_uri(root / "live_mlruns"), rid)
    client, exported = _mlflow_run(uri, rid)
    assert _mlflow_metrics(live_client, live) == _mlflow_metrics(client, exported)
    assert live.data.params == exported.data.params and live.info.status == "FINISHED"
    assert {a.path for a in live_client.list_artifacts(live.info.run_id)} == {"config.json", "student.safetensors"}
    assert _tb_metrics(root / "live_tb" / rid) == _tb_metrics(tmp_path / "tb" / rid)


def test_an_unwritable_mlflow_uri_is_a_clear_error_and_the_store_is_untouched(logged, monkeypatch, capsys):
    store, rid, _ = logged
    monkeypatch.setenv("KDWB_HOME", str(store.root))
    before = (store.get_run(rid), store.metrics(rid, "step").to_json(), len(store.list_runs()))
    bad = "file:///proc/no-such-dir/mlruns"  # a parent that cannot be created
    assert main(["runs", "export", rid, "--to", "mlflow", "--tracking-uri", bad]) == 2
    err = capsys.readouterr().err
    assert f"MLflow at {bad} could not be written" in err and "--tracking-uri" in err
    argv = ["distill", "--pair", "digits", "--max-steps", "2", "--log-to", "mlflow", "--tracking-uri", bad]
    assert main(argv) == 2  # refused before the job starts: no run is created
    assert "could not be written" in capsys.readouterr().err
    assert (store.get_run(rid), store.metrics(rid, "step").to_json(), len(store.list_runs())) == before


def test_a_backend_failing_mid_run_leaves_the_run_complete(tmp_path):
    class Broken(TensorBoardSink):
        def log_metrics(self, rows):
            raise OSError("disk full")

    warnings: list[str] = []
    store = RunStore(tmp_path / "kdwb")
    live = LiveLogger(store, [Broken(tmp_path / "tb")], warn=warnings.append)
    cfg = JobConfig(pair="digits", epochs=1, max_steps=2, batch_size=32, train_size=128, val_size=64)
    with live:
        result = run_job(cfg, store=store, callback=live.wrap(None))
    assert result.state == "completed" and store.get_run(result.run_id)["state"] == "completed"
    assert len(warnings) == 1 and "disk full" in warnings[0] and f"runs export {result.run_id}" in warnings[0]
    assert len(store.metrics(result.run_id, "step")) == 2


@pytest.mark.parametrize(
    "module, sink, extra",
    [("mlflow", lambda p: MlflowSink(None), "mlflow"), ("torch.utils.tensorboard", TensorBoardSink, "tensorboard")],
)
def test_without_the_package_the_error_says_what_to_install(monkeypatch, tmp_path, module, sink, extra):
    monkeypatch.setitem(sys.modules, module, None)  # `import` raises ImportError
    with pytest.raises(TrackingError, match=rf"pip install -e '\.\[{extra}\]'"):
        sink(tmp_path)


@pytest.mark.parametrize(
    "to, needle",
    [(["mlflow", "x"], "--to takes"), (["wandb"], "--to takes"), (["tensorboard", "a", "b"], "--to takes")],
)
def test_bad_export_targets_exit_2(logged, monkeypatch, capsys, to, needle):
    store, rid, _ = logged
    monkeypatch.setenv("KDWB_HOME", str(store.root))
    assert main(["runs", "export", rid, "--to", *to, "--json"]) == 2
    assert needle in json.loads(capsys.readouterr().out)["error"]
