"""app.ui.readable_table: the text a mixed scorecard table is shown as."""

import numpy as np
import pandas as pd

from app.ui import readable_table


def test_readable_table_formats_counts_alike_and_keeps_small_numbers_precise():
    df = pd.DataFrame(
        {"teacher": [24058, 10.3412, None, "n/a"], "student": [3022.0, 0.984375, float("nan"), np.int64(7)]}
    )
    out = readable_table(df)
    assert out["teacher"].tolist() == ["24,058", "10.34", "—", "n/a"]
    assert out["student"].tolist() == ["3,022", "0.9844", "—", "7"]


def test_readable_table_rounds_large_non_integers_and_keeps_booleans_as_words():
    out = readable_table(pd.DataFrame({"x": [123456.7, 1234.5, True]}))
    assert out["x"].tolist() == ["123,457", "1234", "True"]
