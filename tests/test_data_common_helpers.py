"""The helpers shared by the loaders of the user's data (kdcore/data/_user_common.py)."""

import pytest
import torch

from kdcore.data._user_common import classification_dataset, read_source
from kdcore.data.base import SPLITS, SplitData


def test_classification_dataset_serves_the_given_splits():
    g = torch.Generator().manual_seed(0)
    splits = {s: SplitData(torch.randn(4, 3, generator=g), torch.tensor([0, 1, 2, 1])) for s in SPLITS}
    ds = classification_dataset("mine", splits, ["a", "b", "c"], description="4 rows")
    assert (ds.name, ds.task, ds.num_classes, ds.class_names, ds.description) == (
        "mine",
        "classification",
        3,
        ["a", "b", "c"],
        "4 rows",
    )
    built = ds.build()
    assert set(built) == set(SPLITS)
    assert all(torch.equal(built[s].inputs, splits[s].inputs) for s in SPLITS)


def test_read_source_reads_a_path_bytes_and_a_file_object(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"a,b\n1,2\n")
    assert read_source(path, name="src", where="here", max_bytes=100) == (b"a,b\n1,2\n", "data.csv")
    assert read_source(b"xyz", name="src", where="here", max_bytes=3) == (b"xyz", None)
    with path.open("rb") as f:
        assert read_source(f, name="src", where="here", max_bytes=100) == (b"a,b\n1,2\n", "data.csv")
    with pytest.raises(ValueError, match=r"The size of the file 'data.csv': 8 bytes"):
        read_source(path, name="src", where="here", max_bytes=7)
    with pytest.raises(ValueError, match=r"'src' upload of here is larger than max_bytes=7"), path.open("rb") as f:
        read_source(f, name="src", where="here", max_bytes=7)
    with pytest.raises(ValueError, match=r"must be a path to a file.*which is a folder"):
        read_source(tmp_path, name="src", where="here", max_bytes=100)
