"""The workshop path: a guided tour of the pages on the sample pairs, each step saying what to try and notice."""
import streamlit as st

from app import ui

ui.intro(
    "Workshop path",
    "A guided tour of knowledge distillation in about an hour, on the small sample pairs that ship with the "
    "workbench (no downloads, a laptop CPU is enough). Each step opens a page on the right sample pair, says what "
    "to try there and what to notice.",
    "The question running through the tour: what does a student learn from a teacher that it cannot learn from "
    "the labels alone — and when does it fail to learn it?",
    [r"\text{teacher logits } z_t \;\longrightarrow\; p^{t}(T) \;\longrightarrow\; \text{student } q(T)"],
)

STEPS = [
    ("views/overview.py", ":material/home:", "The pair at a glance", "digits",
     "Read the scorecard: how much smaller and faster is the student, and how much accuracy does it keep?",
     "The distilled student beats the baseline (the same network trained on labels alone). The bound below "
     "shows the student's error is at most the teacher's error plus how often they disagree."),
    ("views/soft_labels.py", ":material/thermostat:", "Soft labels and temperature", "digits",
     "Move the temperature slider from 1 to 10. Pick a few inputs with the 'Input #' box.",
     "At T = 1 the teacher is almost one-hot; by T ≈ 4 the wrong classes carry mass, and similar digits "
     "(3 and 8, 4 and 9) get more than others. That ranking is the dark knowledge the student learns from."),
    ("views/distill.py", ":material/science:", "Distil a student yourself", "digits",
     "Start a run with objective kd, T = 4, 3 epochs. Then start one with objective ce (the baseline). "
     "Reload the page while it runs: the job is still there.",
     "Watch the KD component fall faster than the hard-label one, and agreement with the teacher rise. "
     "Compare both runs in 'Runs & reports' and download a report."),
    ("views/features.py", ":material/grid_on:", "Compare the layers (CKA)", "digits",
     "Look at the teacher × student heatmap, then pick your run under 'Across a run's checkpoints'.",
     "A diagonal band: the student builds its features in the same order as the teacher. It sharpens over "
     "training."),
    ("views/cams.py", ":material/local_fire_department:", "Where do they look? (Grad-CAM)", "shapes",
     "Switch the sidebar to the shapes pair. Step through images with 'Image #'.",
     "The outline is the true shape. Does the student's map fall on it as the teacher's does? The pointing-game "
     "and energy bars measure it."),
    ("views/divergences.py", ":material/stacked_bar_chart:", "Which part of the mismatch matters?", "shapes",
     "Compare the strong-set rules, then choose 'target' and read the DKD figure.",
     "Most of the KL sits in the non-target part (NCKD) once the student gets the answer right: it is the "
     "dark knowledge still to learn."),
    ("views/attention.py", ":material/visibility:", "Attention heads", "tinylang",
     "Switch to tinylang. Look at the teacher's second layer, then the head matching matrix.",
     "An induction head in the teacher: a stripe that jumps back to the previous copy. Does the shallower "
     "student have a head like it? The divergence matrix says which student head comes closest."),
    ("views/divergences.py", ":material/stacked_bar_chart:", "Token by token", "tinylang",
     "On tinylang, the Divergence page shows every divergence over the tokens of a text.",
     "The hot tokens are the copied segments: exactly where the student lacks the teacher's induction head. "
     "Forward KL and reverse KL disagree on where it hurts most."),
    ("views/calibration.py", ":material/target:", "Calibration", "digits",
     "Back to digits: compare the three reliability diagrams.",
     "The distilled student is usually better calibrated than the baseline: it learned from soft targets."),
    ("views/doctor.py", ":material/medical_services:", "Diagnose a run", "digits",
     "Open the Doctor on the runs you made (try a run with T = 0.5 or λ = 1 and 1 epoch).",
     "Each finding comes with its evidence and a suggested fix."),
]



def _go(page: str, pair_name: str) -> None:
    """Button callback: choose the step's sample pair in the sidebar (this session only), then open the page."""
    st.session_state["pair_source"] = "Sample pair"
    st.session_state["sample_pair"] = pair_name
    st.session_state["_workshop_go"] = page


for i, (page, icon, title, pair_name, try_this, notice) in enumerate(STEPS, start=1):
    with st.container(border=True):
        head, link = st.columns([3, 1], vertical_alignment="center")
        head.markdown(f"#### {i}. {title}")
        head.caption(f"Sample pair: **{pair_name}**")
        link.button(f"Open on {pair_name}", icon=icon, key=f"workshop_{i}", on_click=_go, args=(page, pair_name),
                    help=f"Chooses the {pair_name} pair in the sidebar and opens the page.")
        st.markdown(f"**Try:** {try_this}")
        st.markdown(f"**Notice:** {notice}")

target = st.session_state.pop("_workshop_go", None)
if target:
    st.switch_page(target)
