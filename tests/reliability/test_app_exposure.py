"""The app is local unless asked: the launcher's address, the page banner, and module loading.

Cases of issue 15: `streamlit run` from another folder listened on every interface, and the sidebar
then imported and called any `module:callable` (`os:abort` ended the server).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit import config
from streamlit.config_option import ConfigOption
from streamlit.testing.v1 import AppTest

from app import __main__ as launcher
from app import safety
from kdcore.data.sources import DataSource
from kdcore.jobs.own_source import OwnPairSource
from tests.helpers.apptest import FACTORY, own_spec

ROOT = Path(__file__).resolve().parents[2]
MAIN = str(ROOT / "app" / "main.py")


def _flag(args: list[str], name: str) -> str | None:
    """The value that follows the last `name` in args (streamlit's click keeps the last one)."""
    found = [args[i + 1] for i, a in enumerate(args[:-1]) if a == name]
    return found[-1] if found else None


# ---- the launcher ------------------------------------------------------------------------------------


def test_launcher_listens_on_loopback_by_default():
    opts, rest = launcher.parse_args([])
    args = launcher.streamlit_argv(opts, rest, launcher.repo_config())
    assert args[:2] == ["run", launcher.MAIN.as_posix()]
    assert _flag(args, "--server.address") == "127.0.0.1"
    assert args.count("--server.address") == 1


@pytest.mark.parametrize(
    "argv, address, port",
    [
        (["--address", "0.0.0.0"], "0.0.0.0", None),
        (["--server.address=10.1.2.3", "--port", "8600"], "10.1.2.3", "8600"),
        (["--server.port", "9000"], "127.0.0.1", "9000"),
    ],
)
def test_launcher_takes_the_address_and_port_the_user_passes(argv, address, port):
    opts, rest = launcher.parse_args(argv)
    args = launcher.streamlit_argv(opts, rest, launcher.repo_config())
    assert _flag(args, "--server.address") == address and args.count("--server.address") == 1
    assert _flag(args, "--server.port") == port


def test_launcher_passes_the_repository_settings_and_lets_the_user_override_them():
    cfg = {
        "server": {"address": "0.0.0.0", "headless": True, "maxUploadSize": 50},
        "client": {"showErrorDetails": "none"},
    }
    opts, rest = launcher.parse_args(["--server.headless", "false", "--theme.base=dark"])
    args = launcher.streamlit_argv(opts, rest, cfg)
    assert _flag(args, "--server.address") == "127.0.0.1"  # a config file never sets the address
    assert _flag(args, "--client.showErrorDetails") == "none" and _flag(args, "--server.maxUploadSize") == "50"
    assert args.count("--server.headless") == 1 and _flag(args, "--server.headless") == "false"
    assert args[-1] == "--theme.base=dark"  # unknown flags pass through, last
    # the repository's own config: no usage statistics, no stack traces, whatever the current folder
    repo = launcher.streamlit_argv(*launcher.parse_args([]), launcher.repo_config())
    assert _flag(repo, "--browser.gatherUsageStats") == "false" and _flag(repo, "--client.showErrorDetails") == "none"


def test_launcher_main_hands_streamlit_the_flags_and_the_module_switch(monkeypatch):
    from streamlit.web import cli

    seen = {}
    monkeypatch.setattr(
        cli, "main", lambda args, prog_name: seen.update(args=args, env=os.environ.get(safety.ALLOW_ENV))
    )
    monkeypatch.setenv(safety.ALLOW_ENV, "")  # recorded, so the launcher's os.environ write is undone after the test
    monkeypatch.delenv(safety.ALLOW_ENV)
    launcher.main(["--port", "8123"])
    assert _flag(seen["args"], "--server.address") == "127.0.0.1" and seen["env"] is None
    launcher.main([safety.ALLOW_FLAG])
    assert seen["env"] == "1" and safety.ALLOW_FLAG not in seen["args"]


def test_the_launcher_test_leaves_module_loading_off():
    """The test above runs the launcher in this process (it writes os.environ): later tests must see it off."""
    assert safety.ALLOW_ENV not in os.environ


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port` (Linux: /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if int(hexport, 16) == port and state == "0A":  # 0A: LISTEN
                found.add(addr)
    return found


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from Linux's /proc")
def test_launcher_started_from_another_folder_listens_on_loopback_only(tmp_path):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KDWB_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "--port", str(port), "--server.headless", "true"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert proc.poll() is None, "the launcher exited early"
                time.sleep(0.5)
        else:
            pytest.fail("the app did not become healthy in 90 s")
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1, nothing else
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ---- the page banner ---------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]", "unix:///tmp/kd.sock"])
def test_local_addresses_need_no_notice(address):
    assert safety.is_local(address)
    assert safety.address_notice(address, True, True) is None


def test_an_address_never_set_blocks_the_pages_and_a_chosen_one_warns():
    level, text = safety.address_notice(None, False, False)
    assert level == "block" and "every network interface" in text and "python -m app" in text
    level, text = safety.address_notice("0.0.0.0", True, False)
    assert level == "warn" and "0.0.0.0" in text and "run Python code" not in text
    level, text = safety.address_notice("192.168.1.5", True, True)
    assert level == "warn" and "run Python code" in text
    assert safety.address_notice("0.0.0.0", False, False)[0] == "block"  # Streamlit's own value, not the user's


def _banner_page():
    import streamlit as st

    from app import safety

    safety.show_address_banner()
    st.write("the page itself")


@pytest.fixture
def address_option():
    """Set server.address for an AppTest (same process), as the user or as Streamlit's default; restored."""
    before = (config.get_option("server.address"), config.get_where_defined("server.address"))

    def set_to(value, by_user=True):
        config.set_option("server.address", value, config._USER_DEFINED if by_user else ConfigOption.DEFAULT_DEFINITION)

    yield set_to
    config.set_option("server.address", *before)


def test_banner_warns_on_a_chosen_public_address(address_option):
    address_option("0.0.0.0")
    at = AppTest.from_function(_banner_page).run()
    assert not at.exception and not at.error
    assert any("listens on 0.0.0.0" in w.value for w in at.warning)
    assert [m.value for m in at.markdown] == ["the page itself"]


def test_banner_is_absent_on_loopback(address_option):
    address_option("127.0.0.1")
    at = AppTest.from_function(_banner_page).run()
    assert not at.warning and not at.error and [m.value for m in at.markdown] == ["the page itself"]


def test_main_shows_no_page_when_listening_everywhere_by_accident(address_option):
    address_option(None, by_user=False)
    at = AppTest.from_file(MAIN, default_timeout=60).run()
    assert not at.exception
    assert len(at.error) == 1 and "every network interface" in at.error[0].value
    assert not at.markdown and not at.sidebar.children, "no page and no sidebar may be shown"


# ---- module loading ----------------------------------------------------------------------------------


@pytest.fixture
def probe_module(tmp_path, monkeypatch):
    """An importable module whose factory records that it ran; removed from sys.modules after."""
    (tmp_path / "kdwb_probe_factory.py").write_text(
        textwrap.dedent("""
        from torch import nn
        RAN = []
        def make():
            RAN.append("ran")
            return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))   # digits: [B, 1, 8, 8] -> 10 classes
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(safety.ALLOW_ENV, raising=False)
    yield "kdwb_probe_factory"
    sys.modules.pop("kdwb_probe_factory", None)


@pytest.mark.parametrize(
    "spec, why",
    [
        ("os:abort", "not one of the allowed modules"),
        ("kdwb_probe_factory:make", "not one of the allowed modules"),
        ("sample_models.train:main", "not one of the allowed modules"),  # would retrain and rewrite the weights
        ("sample_models.architectures:_ConvStage", "not one of the allowed modules"),  # private
        ("sample_models.architectures:dataclass", "not a function or class defined in"),  # imported from elsewhere
        ("sample_models.architectures:Tensor", "not a function or class defined in"),
        ("sample_models.architectures:math", "not a function or class defined in"),  # a module
    ],
)
def test_module_loading_is_refused_by_default_with_how_to_enable_it(probe_module, spec, why):
    with pytest.raises(ValueError) as e:
        safety.check_factory(spec)
    msg = str(e.value)
    assert why in msg and "--allow-module-loading" in msg and safety.ALLOW_ENV in msg
    assert all(m in msg for m in safety.ALLOWED_MODULES)
    assert "kdwb_probe_factory" not in sys.modules, "a refused module must not even be imported"


def test_allowed_factories_pass_and_the_flag_opens_everything(probe_module, monkeypatch):
    safety.check_factory("sample_models.architectures:DigitsStudent")
    with pytest.raises(ValueError, match="is allowed but cannot be imported"):
        safety.check_factory("timm.models.no_such_module_kdwb:make")
    monkeypatch.setenv(safety.ALLOW_ENV, "1")
    safety.check_factory("os:abort")  # checked, never called
    safety.check_factory(f"{probe_module}:make")
    for off in ("0", "", "no"):
        monkeypatch.setenv(safety.ALLOW_ENV, off)
        with pytest.raises(ValueError, match="Module loading is off"):
            safety.check_factory(f"{probe_module}:make")


def _save_weights(tmp_path) -> str:
    import torch
    from torch import nn

    from kdcore.weights import save_state_dict

    torch.manual_seed(0)
    return str(save_state_dict(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), tmp_path / "w.safetensors"))


def _factory_form(teacher: str, student: str):
    """Submit the sidebar's module:factory form for a digits classifier, without weight files."""
    return own_spec("classifier", teacher, student, source=FACTORY, data=0)


def test_the_sidebar_refuses_an_arbitrary_factory_and_never_runs_it(probe_module, tmp_path, monkeypatch):
    from app import state

    weights = _save_weights(tmp_path)
    make = f"{probe_module}:make"
    spec = OwnPairSource("factory", make, make, DataSource("builtin", "digits"), "classifier", weights, weights)
    with pytest.raises(ValueError, match="Refused to load 'kdwb_probe_factory:make'"):
        _factory_form(f"{probe_module}:make", "os:abort")
    with pytest.raises(ValueError, match="Module loading is off"):
        state._own_pair.__wrapped__(spec)  # the loader checks too
    assert "kdwb_probe_factory" not in sys.modules
    monkeypatch.setenv(safety.ALLOW_ENV, "1")  # python -m app --allow-module-loading
    with pytest.raises(ValueError, match="Upload a .safetensors file"):  # past the check, to the next question
        _factory_form(f"{probe_module}:make", f"{probe_module}:make")
    pair = state._own_pair.__wrapped__(spec)
    assert sys.modules["kdwb_probe_factory"].RAN == ["ran", "ran"] and pair.teacher.num_parameters() == 650


def test_the_sidebar_form_shows_the_refusal_and_the_switch(data_dir, probe_module):
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.session_state["pair_source"] = "Your own models"
    at.session_state["own_mode"] = "module:factory + safetensors"
    at.run()
    assert any("Module loading is off" in c.value and "--allow-module-loading" in c.value for c in at.sidebar.caption)
    at.text_input(key="own_teacher_factory").set_value("os:abort")
    at.text_input(key="own_student_factory").set_value(f"{probe_module}:make")
    at.sidebar.button[0].click().run()
    assert not at.exception
    assert at.error and at.error[0].value.startswith("Refused to load 'os:abort'"), [e.value for e in at.error]
    assert "kdwb_probe_factory" not in sys.modules
