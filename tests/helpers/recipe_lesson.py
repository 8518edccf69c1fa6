"""The recipe lesson, checked per pair by tests/test_recipe_lesson_*.py (one file a pair, so that the
suite's processes, one test file each, take the pairs in parallel): on each sample pair, its recipe (sample_models.recipes.RECIPES) makes KD beat the student trained
alone on the same budget, over seeds 0, 1, 2.

Both jobs train the sample student's architecture from a fresh initialisation with the runner, the
teacher's outputs cached; the protocol's baseline is the same config with objective "ce" (same
epochs, training size, lr, schedule, seed). The numbers measured when each recipe was chosen are in
its `measured` field. Accuracy (higher is better) for the classifiers; validation loss (lower is
better) for tinylang.
"""

from kdcore.jobs import JobConfig, RunStore, run_protocol
from kdcore.jobs.recipes import with_recipe
from sample_models.recipes import RECIPES


def check_kd_beats_the_student_alone(name: str) -> None:
    """Runs the pair's recipe and its student-alone baseline over seeds 0-2 (in the caller's KDWB_HOME) and
    checks that KD is better at the best and at the final epoch, on the mean over the seeds."""
    base, _ = with_recipe(
        JobConfig(pair=name, val_size=512, checkpoints=0), RECIPES[name], user_set={"pair", "val_size", "checkpoints"}
    )
    res = run_protocol(base, seeds=[0, 1, 2], store=RunStore())
    table = res.table.set_index("variant")
    print(f"\n{name}:\n" + res.table[["variant", "n_seeds", "metric", "best", "final"]].to_string(index=False))
    assert (res.runs["state"] == "completed").all()
    kd = table.loc[base.objective]
    alone = table.loc["baseline (student alone)"]
    assert kd["n_seeds"] == alone["n_seeds"] == 3
    sign = -1.0 if kd["metric"] == "val_loss" else 1.0  # lower loss is better
    assert sign * (kd["best_mean"] - alone["best_mean"]) > 0
    assert sign * (kd["final_mean"] - alone["final_mean"]) > 0
