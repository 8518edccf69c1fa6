"""What the app refuses unless its user asked: listening beyond this machine, and running their code.

- Address: `python -m app` listens on 127.0.0.1 unless `--address` says otherwise. `address_notice`
  words what the page shows when the server listens on anything else: a warning when the address
  was set on purpose, and a refusal to show the pages when it was never set (a plain
  `streamlit run app/main.py` from a folder without `.streamlit/config.toml` listens on every
  interface).
- Module loading: a `module:factory` typed in the sidebar is imported and called in the server, so
  any importable callable would run (`os:abort` ends the server). It is allowed only from
  ALLOWED_MODULES unless the server was started with `--allow-module-loading` (which sets
  KDWB_ALLOW_MODULES=1).

Imports neither streamlit nor torch: the launcher (`app/__main__.py`) uses it before streamlit starts.
"""

from __future__ import annotations

import importlib
import inspect
import ipaddress
import os
from collections.abc import Mapping

ALLOW_ENV = "KDWB_ALLOW_MODULES"
ALLOW_FLAG = "--allow-module-loading"
# Factories that only build a model when called with no arguments: the sample architectures, and the
# model zoos of torchvision and timm (when installed; no pretrained weights are fetched without arguments).
ALLOWED_MODULES = ("sample_models.architectures", "torchvision.models", "timm.models")
LAUNCH = "python -m app"


# ---- the address -------------------------------------------------------------------------------------


def is_local(address: str | None) -> bool:
    """True for a loopback address (127.0.0.0/8, ::1, localhost) or a unix socket: unreachable from other machines."""
    if not address:
        return False  # unset or "": the server listens on every interface
    if address == "localhost" or address.startswith("unix://"):
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a public interface


def address_notice(address: str | None, manually_set: bool, modules_allowed: bool) -> tuple[str, str] | None:
    """(level, text) to show on every page about where the server listens, or None when it is local.

    level "block": the address was never set, so the server listens on every interface by accident:
    the pages are not shown. level "warn": the user chose a non-local address: the pages are shown
    under a warning.
    """
    if is_local(address):
        return None
    if not manually_set or not address:
        block = (
            f"This workbench is listening on every network interface because it was started without "
            f"an address, so anyone who can reach this machine could use it. Its pages are not shown. "
            f"Restart it with `{LAUNCH}` (or `make app`), which listens on 127.0.0.1 only. To share it "
            f"on purpose, start it with `{LAUNCH} --address 0.0.0.0`."
        )
        return ("block", block)
    risk = (
        " Module loading is on, so anyone who reaches it can run Python code on this machine."
        if modules_allowed
        else ""
    )
    warn = (
        f"This workbench listens on {address}: anyone who can reach this machine on that address can use "
        f"it, see your runs and upload files.{risk} Restart it with `{LAUNCH}` to listen on 127.0.0.1 only."
    )
    return ("warn", warn)


def show_address_banner() -> None:
    """On every page: a warning when the server listens beyond this machine; when that was never
    asked for, the refusal alone, and the script stops (st.stop) before any page is shown."""
    import streamlit as st
    from streamlit import config

    notice = address_notice(
        st.get_option("server.address"), config.is_manually_set("server.address"), module_loading_allowed()
    )
    if notice is None:
        return
    level, text = notice
    if level == "warn":
        st.warning(text, icon=":material/public:")
        return
    st.error(text, icon=":material/block:")
    st.stop()


# ---- module loading ----------------------------------------------------------------------------------


def module_loading_allowed(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the server was started with --allow-module-loading (KDWB_ALLOW_MODULES=1)."""
    value = (os.environ if environ is None else environ).get(ALLOW_ENV, "")
    return value.strip().lower() in ("1", "true", "yes")


def _in_allowed(module_name: str) -> bool:
    return any(module_name == m or module_name.startswith(m + ".") for m in ALLOWED_MODULES)


def module_loading_note() -> str:
    """One line for the sidebar: whether any module may be loaded, and how to change it."""
    if module_loading_allowed():
        return f"Module loading is on ({ALLOW_FLAG}): any importable `module:factory` runs in this server."
    return (
        f"Module loading is off: factories from {', '.join(ALLOWED_MODULES)} only. "
        f"Start with `{LAUNCH} {ALLOW_FLAG}` to load your own."
    )


def _refusal(spec: str, why: str) -> str:
    return (
        f"Refused to load {spec!r}: {why}. Module loading is off, because the factory's code would run "
        f"in this server: only public factories defined in {', '.join(ALLOWED_MODULES)} can be loaded "
        f"(for example sample_models.architectures:DigitsStudent or torchvision.models:resnet18). To load "
        f"your own module, restart the app with `{LAUNCH} {ALLOW_FLAG}` (or set {ALLOW_ENV}=1), only on "
        f"a machine no one else can reach."
    )


def check_factory(spec: str) -> None:
    """Raise ValueError unless the sidebar may import and call `spec` ("package.module:factory").

    With module loading on, any spec passes (load_factory checks its form). Otherwise the module must
    be one of ALLOWED_MODULES (or under it), no part of the name may be private (`_x`), and the
    factory must be a function or class defined there, not a name imported from elsewhere.
    """
    if module_loading_allowed():
        return
    module_name, _, attr = spec.partition(":")
    parts = [*module_name.split("."), attr]
    if not _in_allowed(module_name) or any(not p or p.startswith("_") for p in parts):
        raise ValueError(_refusal(spec, f"{module_name!r} is not one of the allowed modules"))
    try:
        factory = getattr(importlib.import_module(module_name), attr, None)
    except ImportError as e:
        raise ValueError(
            f"Could not load {spec!r}: {module_name!r} is allowed but cannot be imported ({e}). "
            f"Install it, or choose another factory."
        ) from None
    defined_in = getattr(factory, "__module__", None) or ""
    if not (inspect.isfunction(factory) or inspect.isclass(factory)) or not _in_allowed(defined_in):
        raise ValueError(_refusal(spec, f"{attr!r} is not a function or class defined in {module_name!r}"))


def check_run_factories(config: Mapping) -> None:
    """check_factory on each factory a run's config names (JobConfig.teacher_factory, student_factory, and a
    `pair` given as "package.module:make_pair"): a run queued from the command line is reopened in the
    server only when its factories may be loaded here. A pair's display label ("hf:…", "factory:…") of a
    run on directories or factories is not a factory: those runs' models are named by the fields."""
    specs = [config.get("teacher_factory"), config.get("student_factory")]
    pair = config.get("pair")
    if isinstance(pair, str) and ":" in pair and not config.get("teacher") and not config.get("teacher_factory"):
        specs.append(pair)  # a registered pair's name has no ':'
    for spec in specs:
        if isinstance(spec, str) and spec:
            check_factory(spec)
