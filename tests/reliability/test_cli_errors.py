"""No traceback for a user's mistake: each case of issue 15 gets one line and a non-zero exit.

Before: malformed YAML raised ParserError, `params: [1, 2]` TypeError, a seed of 2**64 OverflowError
(2**63 - 1 passed validation, then failed the run), a factory needing arguments TypeError, a
page-corrupted store a traceback on `runs show`, Ctrl-C a KeyboardInterrupt traceback; `--state bogus`
said "no runs yet", `--limit -5` listed everything, `--seeds a,b` did not name the flag, and a
temperature of 1e200 was reported as "lower the learning rate".
"""

from __future__ import annotations

import errno
import json
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from kdcore.cli import main
from kdcore.jobs import JobConfig
from kdcore.jobs.runner import run_job
from kdcore.jobs.store import RunStore
from tests.reliability._cli import TINY, cli, start, write_config


def _main(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_malformed_yaml_names_file_line_and_column(data_dir, tmp_path, capsys):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("pair: digits\nobjective: [kd\nepochs: 2\n")
    code, _, err = _main(capsys, "distill", "--config", str(cfg))
    line = _one_line_error(err.replace("\n  - ", " "))
    assert code == 2 and str(cfg) in line and "line 3, column" in line and "YAML" in line


def test_malformed_json_names_the_file(data_dir, tmp_path, capsys):
    cfg = tmp_path / "job.json"
    cfg.write_text('{"pair": "digits",\n "epochs": ,}')
    code, _, err = _main(capsys, "distill", "--config", str(cfg))
    assert code == 2 and str(cfg) in err and "line 2, column 12" in err and "Traceback" not in err


def test_params_of_the_wrong_type_are_a_config_problem(data_dir, tmp_path, capsys):
    cfg = write_config(tmp_path / "job.yaml", params=[1, 2])
    code, _, err = _main(capsys, "distill", "--config", str(cfg), "--param", "x=1")
    assert code == 2 and "'params' must be a mapping" in err
    code, _, err = _main(capsys, "distill", "--config", str(cfg))
    assert code == 2 and "params" in err and "Traceback" not in err


@pytest.mark.parametrize("seed", [2**64, 2**63, -1])
def test_seed_outside_the_storable_range_is_refused(data_dir, capsys, seed):
    code, _, err = _main(capsys, "distill", "--pair", TINY["pair"], "--seed", str(seed), "--epochs", "1")
    assert code == 2 and f"'seed' must be an integer in [0, {2**63 - 1}]" in err and str(seed) in err


def test_the_largest_storable_seed_trains(data_dir):
    """2**63 - 1 passed validation, then the epoch's shuffling seed (seed * 1_000_003 + epoch) overflowed."""
    res = run_job(JobConfig(**{**TINY, "seed": 2**63 - 1}), store=RunStore())
    assert res.state == "completed", res.error
    assert RunStore().get_run(res.run_id)["seed"] == 2**63 - 1


def test_a_factory_that_needs_arguments_is_refused_by_name(data_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "needs_args_pairs.py").write_text("def make(width, depth):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = _main(capsys, "distill", "--pair", "needs_args_pairs:make", "--epochs", "1")
    assert code == 2 and "needs_args_pairs:make" in err and "without arguments" in err
    assert "Traceback" not in err


def _corrupt_pages(db: Path) -> None:
    """Overwrite every page after the first with garbage (the header stays, so it still opens)."""
    con = sqlite3.connect(db)
    page = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    data = bytearray(db.read_bytes())
    for first in range(page, len(data), page):
        data[first : first + 64] = b"\xa5" * 64
    db.write_bytes(bytes(data))


def test_a_page_corrupted_store_is_one_line_with_the_repair_command(data_dir, capsys):
    store = RunStore()
    rid = store.create_run(JobConfig(**TINY), state="completed")
    store.log_metrics(rid, [("step", s, 1, "loss", 1.0) for s in range(2000)])
    store.close()
    _corrupt_pages(data_dir / "runs.sqlite")
    code, _, err = _main(capsys, "runs", "show", rid)
    assert code == 2 and "damaged" in _one_line_error(err) and "runs check --repair" in err


def test_unknown_state_and_negative_limit_are_refused(data_dir, capsys):
    code, _, err = _main(capsys, "runs", "list", "--state", "bogus")
    assert code == 2 and "--state must be one of queued, running" in err and "'bogus'" in err
    code, _, err = _main(capsys, "runs", "list", "--limit", "-5")
    assert code == 2 and "--limit must be a positive number" in err and "-5" in err


def test_protocol_seeds_error_names_the_flag(data_dir, capsys):
    code, _, err = _main(capsys, "protocol", "--pair", TINY["pair"], "--seeds", "a,b")
    assert code == 2 and "--seeds expects comma-separated integers" in err and "'a'" in err
    code, _, err = _main(capsys, "protocol", "--pair", TINY["pair"], "--temperatures", "1,x")
    assert code == 2 and "--temperatures expects comma-separated numbers" in err


def test_an_absurd_temperature_is_warned_about_before_the_run_and_blamed_after(data_dir, tmp_path, capsys):
    cfg = write_config(tmp_path / "job.yaml", temperature=1e200)
    code, out, err = _main(capsys, "distill", "--config", str(cfg))
    warn = err.index("warning: The temperature 1e+200 is outside the usual range")
    assert warn < err.index("step ") if "step " in err else True
    assert out.startswith("run ")
    if code != 0:  # it blew up: the blame is on the temperature
        assert "temperature 1e+200" in err and "Lower the learning rate" not in err


def test_an_absurd_learning_rate_is_warned_about(data_dir, tmp_path, capsys):
    cfg = write_config(tmp_path / "job.yaml", lr=50.0)
    _, _, err = _main(capsys, "distill", "--config", str(cfg))
    assert "warning: The learning rate (lr) 50 is outside the usual range" in err


def test_export_to_an_existing_file_is_refused(data_dir, tmp_path, capsys):
    res = run_job(JobConfig(**TINY), store=RunStore())
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    code, _, err = _main(capsys, "runs", "export", res.run_id, "--out", str(target))
    assert code == 2 and "is an existing file" in _one_line_error(err) and target.read_text() == "keep me"


def test_export_on_a_read_only_file_system_is_one_line(data_dir, tmp_path, capsys, monkeypatch):
    res = run_job(JobConfig(**TINY), store=RunStore())

    real_mkdir = Path.mkdir
    out = tmp_path / "out"

    def read_only(self: Path, *a: object, **k: object) -> None:
        if str(self).startswith(str(out)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = _main(capsys, "runs", "export", res.run_id, "--out", str(tmp_path / "out"))
    assert code == 2 and "Read-only file system" in _one_line_error(err) and "could not be exported" in err


def test_export_when_the_run_folder_is_gone_names_the_file(data_dir, tmp_path, capsys):
    import shutil

    store = RunStore()
    res = run_job(JobConfig(**TINY), store=store)
    shutil.rmtree(store.run_dir(res.run_id))
    code, _, err = _main(capsys, "runs", "export", res.run_id, "--out", str(tmp_path / "out"))
    assert code == 2 and "student.safetensors" in _one_line_error(err) and "missing" in err


def test_export_refuses_truncated_weights_and_checksums_what_it_writes(data_dir, tmp_path, capsys):
    store = RunStore()
    res = run_job(JobConfig(**TINY), store=store)
    code, out, _ = _main(capsys, "runs", "export", res.run_id, "--out", str(tmp_path / "good"))
    sums = (tmp_path / "good" / "SHA256SUMS").read_text().splitlines()
    assert code == 0 and any(line.endswith("  student.safetensors") for line in sums)
    import hashlib

    for line in sums:
        digest, name = line.split("  ")
        assert hashlib.sha256((tmp_path / "good" / name).read_bytes()).hexdigest() == digest
    weights = store.artifact_path(res.run_id, "student.safetensors")
    weights.write_bytes(weights.read_bytes()[:-100])
    code, _, err = _main(capsys, "runs", "export", res.run_id, "--out", str(tmp_path / "bad"))
    assert code == 2 and str(weights) in err and "sha256" in err
    assert not (tmp_path / "bad" / "student.safetensors").exists()


def test_ctrl_c_says_how_to_resume_and_exits_130(tmp_path):
    home = tmp_path / "kdwb"
    proc = start(
        "distill", "--pair", TINY["pair"], "--epochs", "400", "--batch-size", "16", "--val-size", "32", home=home
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "run RUN_ID" once the run has started
    assert first.startswith("run "), first
    rid = first.split()[1]
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"interrupted, resume with `python -m kdcore runs resume {rid}`" in err and "Traceback" not in err
    assert json.loads(cli("runs", "show", rid, "--json", home=home).stdout)["run"]["state"] == "interrupted"


def test_a_closed_pipe_exits_quietly(tmp_path):
    """`python -m kdcore methods | true`: the reader is gone before the first write (EPIPE)."""
    import subprocess

    from tests.reliability._cli import ROOT, env

    err = tmp_path / "err.txt"
    script = f"{sys.executable} -m kdcore methods 2>{err} | true; exit ${{PIPESTATUS[0]}}"
    p = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env(tmp_path / "kdwb"), capture_output=True, text=True, timeout=120
    )
    assert err.read_text() == "" and p.returncode == 1


def test_any_integer_beyond_64_bits_is_a_config_problem(data_dir, capsys):
    code, _, err = _main(capsys, "distill", "--pair", TINY["pair"], "--epochs", str(2**64))
    assert code == 2 and f"'epochs' must be an integer in [1, {2**63 - 1}]" in err and "Traceback" not in err
