"""`python -m app`: start the workbench, listening on 127.0.0.1 unless --address says otherwise.

    python -m app                          # http://127.0.0.1:8501, this machine only
    python -m app --port 8600              # another port
    python -m app --address 0.0.0.0        # every interface: share it on purpose (the pages say so)
    python -m app --allow-module-loading   # the sidebar may import any module:factory (your own code)
    python -m app --workshop --address 0.0.0.0 [--workers N] [--max-queued K] [--instructor-code CODE]
                                           # a shared workshop server (app/workshop_server.py): each
                                           # browser session its own workspace, N parallel workers

Streamlit reads server.address from .streamlit/config.toml in the current folder, ~/.streamlit and
STREAMLIT_SERVER_ADDRESS; a command-line flag overrides them all, so the launcher always passes
one: the address is 127.0.0.1 wherever the app is started from. The other settings of the
repository's .streamlit/config.toml (no usage statistics, no stack traces shown, the upload limit)
are passed as flags too, since Streamlit reads that file only when started from the repository
root. Other arguments go to `streamlit run` unchanged and win over those (e.g. --server.headless false).
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from pathlib import Path

from app import workshop_server
from app.safety import ALLOW_ENV, ALLOW_FLAG

MAIN = Path(__file__).resolve().with_name("main.py")
CONFIG = MAIN.parents[1] / ".streamlit" / "config.toml"
DEFAULT_ADDRESS = "127.0.0.1"


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """The launcher's own options, and the arguments left for `streamlit run`."""
    p = argparse.ArgumentParser(
        prog="python -m app",
        description="Start the KD Workbench app.",
        allow_abbrev=False,
        epilog="Other arguments are passed on to `streamlit run` (see `streamlit run --help`).",
    )
    p.add_argument(
        "--address",
        "--server.address",
        dest="address",
        default=DEFAULT_ADDRESS,
        help=f"the address to listen on (default {DEFAULT_ADDRESS}: this machine only)",
    )
    p.add_argument(
        "--port",
        "--server.port",
        dest="port",
        type=int,
        default=None,
        help="the port to listen on (default: Streamlit's, 8501)",
    )
    p.add_argument(
        ALLOW_FLAG,
        action="store_true",
        help="let the sidebar import and call any module:factory (runs that code in the server)",
    )
    w = p.add_argument_group("workshop server (README: Scaling out)")
    w.add_argument(
        "--workshop",
        action="store_true",
        default=workshop_server.enabled(),
        help="serve a class: each browser session names its own workspace and sees only its runs "
        f"(also ${workshop_server.WORKSHOP_ENV}=1)",
    )
    w.add_argument("--workers", type=int, help="background workers training side by side (default: the CPU cores)")
    w.add_argument(
        "--max-queued",
        type=int,
        help=f"runs one participant may have queued or running at once (default {workshop_server.DEFAULT_MAX_QUEUED})",
    )
    w.add_argument("--instructor-code", help="the code that opens the Instructor page (default: a fresh one, printed)")
    return p.parse_known_args(argv)


def workshop_env(opts: argparse.Namespace, env: dict) -> dict[str, str]:
    """The environment variables a workshop server runs with ({} in single-user mode; the workshop
    flags without --workshop are an error)."""
    given = [f for f, v in (("--workers", opts.workers), ("--max-queued", opts.max_queued)) if v is not None]
    if not opts.workshop:
        if given or opts.instructor_code:
            flags = ", ".join(given + (["--instructor-code"] if opts.instructor_code else []))
            raise SystemExit(f"{flags} configure a workshop server: add --workshop (or set KDWB_WORKSHOP=1).")
        return {}
    try:
        return workshop_server.launch_env(opts.workers, opts.max_queued, opts.instructor_code, env)
    except ValueError as exc:
        raise SystemExit(str(exc)) from exc


def config_flags(config: dict, rest: list[str]) -> list[str]:
    """--section.key value for each setting of a config.toml dict, less those in `rest` and the address."""
    given = {a.split("=", 1)[0] for a in rest if a.startswith("--")}
    flags = []
    for section, values in config.items():
        for key, value in values.items():
            flag = f"--{section}.{key}"
            if flag not in given and flag != "--server.address":
                flags += [flag, str(value).lower() if isinstance(value, bool) else str(value)]
    return flags


def streamlit_argv(opts: argparse.Namespace, rest: list[str], config: dict | None = None) -> list[str]:
    """The arguments of `streamlit` (the `run` subcommand first) for these options."""
    args = ["run", str(MAIN), *config_flags(config or {}, rest), "--server.address", opts.address]
    if opts.port is not None:
        args += ["--server.port", str(opts.port)]
    return args + rest


def repo_config() -> dict:
    """The repository's .streamlit/config.toml as a dict ({} when it is missing)."""
    return tomllib.loads(CONFIG.read_text()) if CONFIG.is_file() else {}


def main(argv: list[str] | None = None) -> None:
    opts, rest = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.allow_module_loading:
        os.environ[ALLOW_ENV] = "1"  # read by app/safety.py in this same process
    workshop = workshop_env(opts, dict(os.environ))
    os.environ.update(workshop)  # read by app/workshop_server.py here and by the workers it starts
    if workshop:
        print(
            f"Workshop server: {workshop['KDWB_WORKERS']} workers, at most {workshop[workshop_server.MAX_QUEUED_ENV]} "
            f"runs queued or running per participant. Instructor code: {workshop[workshop_server.CODE_ENV]}",
            flush=True,
        )
    from streamlit.web import cli

    cli.main(args=streamlit_argv(opts, rest, repo_config()), prog_name="streamlit")


if __name__ == "__main__":
    main()
