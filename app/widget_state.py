"""Widget defaults that a form can reset: given through session_state, not the widget's own value.

    number = st.number_input("Epochs", 1, 500, key=seeded("job_epochs", recipe.epochs))

A form that resets its fields (a new pair, a new recipe) deletes their keys. A widget created with
`value=` would keep showing the browser's old value (the page sends it back; a deleted key does not reset
it); one seeded through session_state shows the new default.
"""

from __future__ import annotations

from typing import Any

import streamlit as st


def seeded(key: str, default: Any) -> str:
    """`key`, with `default` put in session_state under it unless a value is there: create the widget with
    this key and no value/index of its own (see the module doc)."""
    if key not in st.session_state:
        st.session_state[key] = default
    return key
