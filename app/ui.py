"""Page furniture shared by every view: the teaching header, plain-word errors, figures with export."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from kdcore.jobs.workspace import QueueLimitError, WorkspaceError

log = logging.getLogger("kdwb.app")


def intro(title: str, what: str, look_for: str, formulas: list[str] | None = None, *, expanded: bool = True) -> None:
    """Every page opens by saying what it shows, what to look for, and the formulas behind it."""
    st.title(title)
    with st.expander("What this page shows", expanded=expanded):
        st.markdown(what)
        st.markdown(f"**What to look for.** {look_for}")
        for tex in formulas or []:
            st.latex(tex)


def _plain(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return re.sub(r"\s+", " ", text)


@contextlib.contextmanager
def guard(doing: str):
    """Run a block; show any error in plain words instead of a stack trace, and keep the page alive.

    ValueError carries our own messages (what was expected, what came, how to fix) and is shown as is.
    """
    try:
        yield
    except (QueueLimitError, WorkspaceError) as exc:  # a workshop participant's limit or workspace: as is
        st.error(f"Could not {doing}: {_plain(exc)}", icon=":material/block:")
    except ValueError as exc:
        st.error(f"Could not {doing}: {_plain(exc)}", icon=":material/error:")
    except FileNotFoundError as exc:
        st.error(
            f"Could not {doing}: a file was not found ({_plain(exc)}). Check the path and try again.",
            icon=":material/error:",
        )
    except MemoryError:
        st.error(
            f"Could not {doing}: out of memory. Lower the probe size in the sidebar and try again.",
            icon=":material/error:",
        )
    except Exception as exc:  # noqa: BLE001 — the page must keep running whatever the backend raises
        log.exception("error while trying to %s", doing)
        st.error(f"Could not {doing}: {type(exc).__name__}: {_plain(exc)}", icon=":material/error:")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "figure"


def _readable(fig: go.Figure) -> go.Figure:
    """Layout fixes for the app: a top horizontal legend collides with long titles and subplot titles,
    so it goes to the right of the plot; log axes get round tick labels instead of plotly's abbreviated minor ones."""
    legend = fig.layout.legend
    if fig.layout.showlegend is not False and legend.orientation == "h" and (legend.y is None or legend.y >= 1):
        fig.update_layout(legend={"orientation": "v", "yanchor": "top", "y": 1, "xanchor": "left", "x": 1.02})
        fig.update_layout(margin={"r": 20})  # plotly widens the margin to fit the legend
    fig.update_xaxes(automargin=True)  # axis titles below rotated tick labels, never on them
    fig.update_yaxes(automargin=True)
    for axis in fig.select_xaxes():
        if axis.type == "log" and axis.tickvals is None:
            axis.update(tickvals=[0.5, 1, 2, 4, 8, 16, 32], ticktext=["0.5", "1", "2", "4", "8", "16", "32"])
    return fig


def show_figure(fig: go.Figure, key: str, *, caption: str | None = None, height: int | None = None) -> None:
    """A plotly figure with its caption, a PNG button in its toolbar, and an HTML download.

    The HTML embeds plotly.js, so the file opens offline; it is built only when clicked.
    """
    name = _slug(key)
    config = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": name, "scale": 2}}
    if height is not None:
        fig.update_layout(height=height)
    _readable(fig)
    st.plotly_chart(fig, key=f"chart_{key}", config=config, theme=None)
    cols = st.columns([5, 1], vertical_alignment="center")
    if caption:
        cols[0].caption(caption)
    html_download(
        cols[1],
        "HTML",
        lambda: fig.to_html(include_plotlyjs=True, full_html=True),
        f"{name}.html",
        f"dl_{key}",
        icon=":material/download:",
        type="tertiary",
        help="Download a self-contained HTML copy of this figure (opens offline). "
        "For PNG, use the camera icon in the chart's toolbar.",
    )


def html_download(where, label: str, make: Callable[[], str], file_name: str, key: str, **style: Any) -> None:
    """A button in `where` (st or a column) that downloads the HTML `make()` builds only when clicked, and
    leaves the page as it is (no rerun); `style` goes to download_button (type, icon, help)."""
    where.download_button(label, data=make, file_name=file_name, mime="text/html", key=key, on_click="ignore", **style)


# pages that read class or token probabilities: an encoder pair (sentence embeddings) is pointed elsewhere
PROBABILITY_KINDS = ("classifier", "causal_lm")
ENCODER_ELSEWHERE = (
    "This page reads class or token probabilities, and this is an encoder pair: its models output sentence "
    "embeddings, not classes. Compare encoders on **Features** (CKA between layers and of the pooled "
    "embeddings) and **Attention** (heads, labelled with the tokens); distil them with `embed_distill` on "
    "the **Distill** page."
)


def page_context(*, kinds: tuple[str, ...] = ()):
    """(pair, key, device, probe size) for the sidebar's choice, or None (a message is shown) when no pair is
    ready, or when `kinds` is given and the pair's kind is not among them (an encoder pair on a probability
    page: told where to go instead)."""
    from app import state

    pair = state.current_pair()
    if pair is None:
        return None
    if kinds and pair.kind not in kinds:
        st.info(ENCODER_ELSEWHERE if pair.kind == "encoder" else f"This page needs a {' or '.join(kinds)} pair.")
        return None
    return pair, state.pair_key(), state.device(), state.probe_size()


def page(title: str, what: str, look_for: str, formulas: list[str] | None = None, *, kinds: tuple[str, ...] = ()):
    """A pair page's header: the intro (see `intro`), then the page context (see `page_context`):
    (pair, key, device, probe size), or None when no pair is ready (or its kind is not in `kinds`)."""
    intro(title, what, look_for, formulas)
    return page_context(kinds=kinds)


def needs(pair, *, kinds: tuple[str, ...] = (), tasks: tuple[str, ...] = (), what: str = "", instead: str = "") -> bool:
    """True when the pair fits the page; otherwise say so in plain words and point elsewhere."""
    ok = (not kinds or pair.kind in kinds) and (not tasks or pair.dataset.task in tasks)
    if not ok:
        st.info(f"{what} {instead}".strip(), icon=":material/info:")
    return ok


def readable_table(df):
    """A mixed table as text for display: whole numbers from 1,000 up with thousands separators,
    other numbers to 4 significant digits, missing cells as a dash."""
    import math
    import numbers

    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            v = float(v)
            return f"{v:,.0f}" if (abs(v) >= 1e3 and v == round(v)) or abs(v) >= 1e4 else f"{v:.4g}"
        return str(v)

    return df.map(cell)


def claim(c) -> None:
    """A claim computed from what the page shows (analyses.claims.Claim): its sentence, marked as
    holding or not, so a participant never reads a lesson the data on screen does not bear out."""
    if c.holds:
        st.success(c.sentence, icon=":material/check_circle:")
    else:
        st.info(c.sentence, icon=":material/info:")
