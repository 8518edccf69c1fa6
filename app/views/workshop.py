"""The workshop path: a guided tour of the pages on the sample pairs. Each step's page shows its Try,
a Notice computed from what the page shows, and Previous / Next (app/guide.py)."""

import streamlit as st

from app import guide, ui

ui.intro(
    "Workshop path",
    "A guided tour of knowledge distillation in about an hour, on the small sample pairs that ship with the "
    "workbench (no downloads, a laptop CPU is enough). Start the path: each step opens a page on the right sample "
    "pair, with the step at the top — what to try there, and a Notice computed from what that page shows (it "
    "says so when the data does not bear the lesson out, and what to change).",
    "The question running through the tour: what does a student learn from a teacher that it cannot learn from "
    "the labels alone — and when does it fail to learn it? The pages compare on the sidebar's probe size "
    "(default 512 test inputs: all 360 of digits, 512 of shapes); smaller probes make the comparisons noisy.",
    [r"\text{teacher logits } z_t \;\longrightarrow\; p^{t}(T) \;\longrightarrow\; \text{student } q(T)"],
)

current = st.session_state.get(guide.STEP_KEY)
st.button(
    "Start the path" if current is None else f"Continue at step {current + 1}",
    type="primary",
    icon=":material/school:",
    key="path_start",
    on_click=guide.go,
    args=(current or 0,),
)

for i, step in enumerate(guide.STEPS):
    with st.container(border=True):
        head, link = st.columns([3, 1], vertical_alignment="center")
        head.markdown(f"#### {i + 1}. {step.title}" + (" · *current step*" if i == current else ""))
        head.caption(f"Sample pair: **{step.pair}**")
        link.button(
            f"Open on {step.pair}",
            icon=step.icon,
            key=f"workshop_{i + 1}",
            on_click=guide.go,
            args=(i,),
            help=f"Goes to step {i + 1}: chooses the {step.pair} pair in the sidebar and opens the page, "
            f"with the step's Try and Notice at the top.",
        )
        st.markdown(f"**Try:** {step.try_this}")
        st.markdown(f"**Look at:** {step.look} *(the page's Notice says what its data shows)*")

guide.switch_if_asked()
