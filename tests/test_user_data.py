"""The user's own data: image folders, CSV/Parquet tables, plain text, and our tokenizers.

Every fixture is built here in tmp_path. Images carry their identity in their pixels (red channel:
class, green channel: image number) and table rows in a `row` feature, so the tests can check each
sample's label, and that splits are disjoint, complete, stratified and seeded, without trusting the
loader's own bookkeeping.
"""

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from kdcore.data import (
    IGNORE_INDEX,
    SPLITS,
    CharTokenizer,
    Dataset,
    WordTokenizer,
    load_image_folder,
    load_table,
    load_text,
    tokenizer_from_dict,
)

# ----------------------------------------------------------------------------- image folders

RED = {"cat": 40, "dog": 120, "emu": 200}  # the red value of every pixel of a class


def _png(path, red, green, size=(6, 6), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, (red, green, 7) if mode == "RGB" else red).save(path)


def _image_folder(root, per_class=7, classes=RED):
    for name, red in classes.items():
        for i in range(per_class):
            _png(root / name / f"{i:03d}.png", red, 10 * i + 3)
    return root


def _identities(split):
    """(class red value, image green value) of each image, read from its pixels."""
    red = (split.inputs[:, 0].mean(dim=(1, 2)) * 255).round().long()
    green = (split.inputs[:, 1].mean(dim=(1, 2)) * 255).round().long()
    return list(zip(red.tolist(), green.tolist()))


def test_image_folder_reads_every_image_with_its_class(tmp_path):
    root = _image_folder(tmp_path / "pets")
    ds = load_image_folder(root, image_size=8)
    assert isinstance(ds, Dataset) and ds.task == "classification" and ds.name == "pets"
    assert ds.class_names == ["cat", "dog", "emu"] and ds.num_classes == 3 and ds.size == 3
    seen = []
    for s in SPLITS:
        sp = ds.split(s)
        assert sp.inputs.shape[1:] == (3, 8, 8) and sp.inputs.dtype == torch.float32
        assert sp.targets.dtype == torch.long
        assert float(sp.inputs.min()) >= 0.0 and float(sp.inputs.max()) <= 1.0
        # blue is 7 everywhere: the scaling is x / 255
        torch.testing.assert_close(sp.inputs[:, 2], torch.full_like(sp.inputs[:, 2], 7 / 255))
        for (red, green), y in zip(_identities(sp), sp.targets.tolist()):
            assert red == RED[ds.class_names[y]]
            seen.append((red, green))
    # every image exactly once across the splits: complete and disjoint
    assert sorted(seen) == sorted((r, 10 * i + 3) for r in RED.values() for i in range(7))
    assert ds.load_report["images"] == 21 and ds.load_report["per_class"] == {"cat": 7, "dog": 7, "emu": 7}
    assert ds.load_report["unreadable"] == 0


def test_image_folder_splits_are_stratified_and_seeded(tmp_path):
    root = _image_folder(tmp_path / "pets", per_class=10)
    a = load_image_folder(root, image_size=4, val_fraction=0.2, test_fraction=0.2, seed=3)
    b = load_image_folder(root, image_size=4, val_fraction=0.2, test_fraction=0.2, seed=3)
    for s in SPLITS:
        torch.testing.assert_close(a.split(s).inputs, b.split(s).inputs, rtol=0, atol=0)
        assert torch.equal(a.split(s).targets, b.split(s).targets)
        # 10 images per class, 20% of them -> 2 of each class in val and test, 6 in train
        counts = torch.bincount(a.split(s).targets, minlength=3).tolist()
        assert counts == ([6, 6, 6] if s == "train" else [2, 2, 2]), (s, counts)
    test_sets = {frozenset(_identities(load_image_folder(root, image_size=4, seed=k).split("test"))) for k in range(4)}
    assert len(test_sets) > 1, "different seeds should give different test splits"


def test_image_folder_skips_unreadable_and_non_image_files(tmp_path):
    root = _image_folder(tmp_path / "pets")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    good = io.BytesIO()
    Image.new("RGB", (6, 6), (1, 2, 3)).save(good, format="PNG")
    (root / "dog" / "truncated.png").write_bytes(good.getvalue()[:30])
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("files at the root are ignored")
    (root / "emu" / ".DS_Store").write_bytes(b"\0\0")
    ds = load_image_folder(root, image_size=4)
    rep = ds.load_report
    assert rep["unreadable"] == 2 and sorted(rep["unreadable_files"]) == ["cat/broken.png", "dog/truncated.png"]
    assert rep["skipped_not_image"] == 1 and rep["skipped_files"] == ["dog/notes.txt"]
    assert rep["ignored_root_files"] == 1 and rep["unreadable_reason"]
    assert sum(len(ds.split(s)) for s in SPLITS) == 21 == rep["images"]


def test_image_folder_converts_modes_and_sizes(tmp_path):
    root = tmp_path / "mixed"
    for c in ("rgba", "jpeg"):
        (root / c).mkdir(parents=True)
    for i in range(3):
        _png(root / "gray" / f"{i}.png", 60 + i, 0, size=(20, 10), mode="L")
        Image.new("RGBA", (5, 9), (200, 100 + i, 50, 128)).save(root / "rgba" / f"{i}.png")
        Image.new("RGB", (12, 12), (9, 9, 9 + i)).save(root / "jpeg" / f"{i}.jpg", quality=100)
    ds = load_image_folder(root, image_size=5, val_fraction=0.34, test_fraction=0.33)
    x = torch.cat([ds.split(s).inputs for s in SPLITS])
    y = torch.cat([ds.split(s).targets for s in SPLITS])
    assert x.shape == (9, 3, 5, 5) and ds.class_names == ["gray", "jpeg", "rgba"]
    gray = x[y == 0]
    # a grayscale image becomes three equal channels
    torch.testing.assert_close(gray[:, 0], gray[:, 1])
    torch.testing.assert_close(gray[:, 0], gray[:, 2])
    assert sorted((gray[:, 0].mean(dim=(1, 2)) * 255).round().long().tolist()) == [60, 61, 62]
    rgba = x[y == 2]
    assert torch.allclose(rgba[:, 0], torch.tensor(200 / 255))  # alpha dropped, colour kept


def test_image_folder_max_images_keeps_every_class(tmp_path):
    root = _image_folder(tmp_path / "pets", per_class=7)
    ds = load_image_folder(root, image_size=4, max_images=12)
    assert ds.load_report["per_class"] == {"cat": 4, "dog": 4, "emu": 4}
    assert ds.load_report["stopped_at_max_images"] is True
    # taken in file order: the first four images of each class
    greens = sorted({g for s in SPLITS for _, g in _identities(ds.split(s))})
    assert greens == [3, 13, 23, 33]


def test_image_folder_drops_and_reports_empty_class_folders(tmp_path):
    root = _image_folder(tmp_path / "pets", classes={"cat": 40, "dog": 120})
    (root / "empty").mkdir()
    (root / "junk").mkdir()
    (root / "junk" / "a.png").write_bytes(b"nope")
    ds = load_image_folder(root, image_size=4)
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert ds.load_report["empty_classes"] == ["empty", "junk"] and ds.load_report["unreadable"] == 1


def test_image_folder_refuses_one_class(tmp_path):
    root = _image_folder(tmp_path / "pets", classes={"cat": 40})
    (root / "dog").mkdir()
    (root / "dog" / "x.png").write_bytes(b"corrupt")
    with pytest.raises(ValueError, match=r"at least 2 class subfolders") as e:
        load_image_folder(root)
    assert "Found 1 ('cat')" in str(e.value) and "root/<class>/<image>" in str(e.value)


def test_image_folder_refuses_images_at_the_root_only(tmp_path):
    for i in range(4):
        _png(tmp_path / "flat" / f"{i}.png", 1, 2)
    with pytest.raises(
        ValueError, match=r"No readable image.*0 class folder\(s\).*4 file\(s\) directly in the root folder \(ignored\)"
    ):
        load_image_folder(tmp_path / "flat")


def test_image_folder_refuses_nothing_readable(tmp_path):
    root = tmp_path / "bad"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        (root / c / "1.png").write_bytes(b"garbage")
        (root / c / "2.csv").write_text("x")
    with pytest.raises(
        ValueError, match=r"No readable image.*2 unreadable image\(s\), 2 file\(s\) that are not images"
    ):
        load_image_folder(root)


def test_image_folder_refuses_bad_paths_and_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"'path' parameter.*no such folder"):
        load_image_folder(tmp_path / "missing")
    f = tmp_path / "file.png"
    _png(f, 1, 1)
    with pytest.raises(ValueError, match=r"'path' parameter.*which is a file"):
        load_image_folder(f)
    root = _image_folder(tmp_path / "pets")
    with pytest.raises(ValueError, match=r"'image_size' parameter"):
        load_image_folder(root, image_size=0)
    with pytest.raises(ValueError, match=r"val_fraction \+ test_fraction.*below 1"):
        load_image_folder(root, val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"'test_fraction' parameter.*\(0.0, 1.0\)"):
        load_image_folder(root, test_fraction=0)
    with pytest.raises(ValueError, match=r"over the limit max_bytes=100 .*max_images"):
        load_image_folder(root, max_bytes=100)


def test_image_folder_refuses_too_few_images_per_class(tmp_path):
    root = _image_folder(tmp_path / "pets", per_class=5)
    for p in sorted((root / "dog").iterdir())[2:]:
        p.unlink()
    with pytest.raises(ValueError, match=r"at least 3 samples of every class.*Got 2 of class 'dog'"):
        load_image_folder(root)


# ----------------------------------------------------------------------------- tables


def _frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    row = np.arange(n)
    return pd.DataFrame(
        {
            "row": row,  # identifies the row after standardisation
            "a": rng.normal(5.0, 3.0, n),
            "b": rng.integers(-4, 9, n),
            "flag": rng.random(n) > 0.5,
            "species": np.array(["setosa", "virginica", "versicolor"])[row % 3],
        }
    )


def _rows_of(split, mean, std):
    """The `row` feature (column 0) undone from standardisation."""
    return np.rint(split.inputs[:, 0].double().numpy() * std[0] + mean[0]).astype(int)


def test_table_standardises_with_train_statistics_only(tmp_path):
    df = _frame()
    path = tmp_path / "iris.csv"
    df.to_csv(path, index=False)
    ds = load_table(path, label_column="species")
    assert ds.name == "iris.csv" and ds.task == "classification"
    assert ds.class_names == ["setosa", "versicolor", "virginica"] and ds.num_classes == 3
    rep = ds.load_report
    assert rep["features"] == ["row", "a", "b", "flag"]
    mean, std = np.array(rep["mean"]), np.array(rep["std"])
    train = ds.split("train")
    x_train = train.inputs.double().numpy()
    np.testing.assert_allclose(x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=0), 1.0, atol=1e-5)
    # the statistics are those of the raw train rows, computed here in float64
    raw = df[["row", "a", "b", "flag"]].to_numpy(dtype=np.float64)
    train_rows = _rows_of(train, mean, std)
    np.testing.assert_allclose(mean, raw[train_rows].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, raw[train_rows].std(axis=0), rtol=1e-12)
    assert not np.allclose(mean, raw.mean(axis=0)), "fixture should make train and full statistics differ"
    names = np.array(["setosa", "virginica", "versicolor"])
    for s in SPLITS:
        sp = ds.split(s)
        rows = _rows_of(sp, mean, std)
        # every split's features are (raw - train mean) / train std, and labels match the rows
        np.testing.assert_allclose(sp.inputs.double().numpy(), (raw[rows] - mean) / std, atol=1e-5)
        assert [ds.class_names[t] for t in sp.targets.tolist()] == names[rows % 3].tolist()


def test_table_splits_are_complete_disjoint_stratified_and_seeded(tmp_path):
    df = _frame(n=60)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)

    def rows(ds):
        m, sd = np.array(ds.load_report["mean"]), np.array(ds.load_report["std"])
        return {s: _rows_of(ds.split(s), m, sd) for s in SPLITS}

    a, b = (
        rows(load_table(path, label_column="species", seed=5)),
        rows(load_table(path, label_column="species", seed=5)),
    )
    assert all(np.array_equal(a[s], b[s]) for s in SPLITS)
    assert sorted(np.concatenate([a[s] for s in SPLITS]).tolist()) == list(range(60))
    ds = load_table(path, label_column="species", seed=5)
    for s in SPLITS:  # 20 rows per class: 3 of each in val and test (15% rounded), 14 in train
        assert torch.bincount(ds.split(s).targets, minlength=3).tolist() == ([14] * 3 if s == "train" else [3] * 3)
    others = [rows(load_table(path, label_column="species", seed=k))["test"] for k in range(4)]
    assert len({tuple(sorted(t.tolist())) for t in others}) > 1


def test_table_reads_parquet_from_path_upload_and_bytes(tmp_path):
    df = _frame(n=30)
    path = tmp_path / "data.parquet"
    df.to_parquet(path, index=False)
    from_path = load_table(path, label_column="species", seed=1)
    upload = io.BytesIO(path.read_bytes())
    upload.name = "upload.PQ"  # as Streamlit's UploadedFile: a name with a suffix
    from_upload = load_table(upload, label_column="species", seed=1)
    from_bytes = load_table(path.read_bytes(), label_column="species", format="parquet", seed=1)
    assert from_upload.name == "upload.PQ" and from_bytes.name == "table"
    for other in (from_upload, from_bytes):
        for s in SPLITS:
            assert torch.equal(from_path.split(s).inputs, other.split(s).inputs)
            assert torch.equal(from_path.split(s).targets, other.split(s).targets)
    csv = load_table(df.to_csv(index=False).encode(), label_column="species", format="csv", seed=1)
    torch.testing.assert_close(csv.split("val").inputs, from_path.split("val").inputs)


def test_table_integer_labels_and_feature_subset(tmp_path):
    df = _frame(n=30)
    df["grade"] = np.array([10, 3, 7])[df["row"] % 3]
    path = tmp_path / "g.tsv"
    df.to_csv(path, index=False, sep="\t")
    ds = load_table(path, label_column="grade", feature_columns=["a", "b"])
    assert ds.class_names == ["3", "7", "10"]  # numeric order, not string order
    assert ds.split("train").inputs.shape[1] == 2 and ds.load_report["features"] == ["a", "b"]
    a_std = (df["a"] - ds.load_report["mean"][0]) / ds.load_report["std"][0]
    want = dict(zip(np.round(a_std, 4), np.array([2, 0, 1])[df["row"] % 3]))  # 10 -> id 2, 3 -> 0, 7 -> 1
    for s in SPLITS:
        sp = ds.split(s)
        got = [want[v] for v in np.round(sp.inputs[:, 0].double().numpy(), 4)]
        assert got == sp.targets.tolist()


def test_table_missing_label_column_lists_columns(tmp_path):
    path = tmp_path / "t.csv"
    _frame().to_csv(path, index=False)
    with pytest.raises(
        ValueError,
        match=r"'label_column'.*Got 'Species'.*'row', 'a', 'b', 'flag', 'species'.*"
        r"Did you mean 'species'",
    ):
        load_table(path, label_column="Species")
    semi = tmp_path / "semi.csv"
    _frame().to_csv(semi, index=False, sep=";")
    with pytest.raises(ValueError, match=r"separator may be different"):
        load_table(semi, label_column="label")


def test_table_refuses_non_numeric_features_naming_them(tmp_path):
    df = _frame()
    df["city"] = "Paris"
    df["when"] = "2024-01-01"
    with pytest.raises(ValueError, match=r"2 non-numeric column\(s\): 'city' \((object|str), e.g. 'Paris'\), 'when'"):
        load_table(df.to_csv(index=False).encode(), label_column="species", format="csv")


def test_table_refuses_missing_and_infinite_features(tmp_path):
    df = _frame()
    df.loc[[1, 5, 9], "a"] = np.nan
    df.loc[2, "b"] = np.nan
    with pytest.raises(ValueError, match=r"4 missing \(NaN\) value\(s\) in 2 column\(s\) \('a': 3, 'b': 1\)"):
        load_table(df.to_csv(index=False).encode(), label_column="species", format="csv")
    df = _frame()
    df.loc[4, "a"] = np.inf
    with pytest.raises(ValueError, match=r"1 infinite value\(s\) \('a': 1\)"):
        load_table(df.to_parquet(index=False), label_column="species", format="parquet")


def test_table_refuses_bad_labels(tmp_path):
    df = _frame()
    df["species"] = "setosa"
    with pytest.raises(ValueError, match=r"at least 2 classes. Got only 'setosa' in all 60 rows"):
        load_table(df.to_csv(index=False).encode(), label_column="species", format="csv")
    df = _frame()
    df.loc[3, "species"] = None
    with pytest.raises(ValueError, match=r"1 empty value"):
        load_table(df.to_csv(index=False).encode(), label_column="species", format="csv")
    with pytest.raises(ValueError, match=r"fractional numbers"):
        load_table(_frame().to_csv(index=False).encode(), label_column="a", format="csv", feature_columns=["b"])


def test_table_refuses_bad_inputs(tmp_path):
    df = _frame()
    with pytest.raises(ValueError, match=r"must not include the label column"):
        load_table(
            df.to_csv(index=False).encode(), label_column="species", format="csv", feature_columns=["a", "species"]
        )
    with pytest.raises(ValueError, match=r"does not have: \['zzz'\]"):
        load_table(df.to_csv(index=False).encode(), label_column="species", format="csv", feature_columns=["zzz"])
    with pytest.raises(ValueError, match=r"Pass format='csv' or format='parquet'"):
        load_table(df.to_csv(index=False).encode(), label_column="species")
    with pytest.raises(ValueError, match=r"is empty"):
        load_table(b"", label_column="species", format="csv")
    with pytest.raises(ValueError, match=r"header but no rows"):
        load_table(b"a,species\n", label_column="species", format="csv")
    with pytest.raises(ValueError, match=r"could not read the data as Parquet"):
        load_table(b"a,b\n1,2\n", label_column="b", format="parquet")
    with pytest.raises(ValueError, match=r"over the limit max_bytes=50 "):
        load_table(df.to_csv(index=False).encode(), label_column="species", format="csv", max_bytes=50)
    path = tmp_path / "big.csv"
    df.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"file 'big.csv'.*over the limit max_bytes=50 "):
        load_table(path, label_column="species", max_bytes=50)
    upload = io.BytesIO(path.read_bytes())
    upload.name = "big.csv"
    with pytest.raises(ValueError, match=r"larger than max_bytes=50 "):
        load_table(upload, label_column="species", max_bytes=50)
    with pytest.raises(ValueError, match=r"no such file"):
        load_table(tmp_path / "nope.csv", label_column="species")


# ----------------------------------------------------------------------------- text


def _sentences(n=80, seed=0):
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "far"]
    return " ".join(" ".join(rng.choice(words, size=5)) + "." for _ in range(n)) + "\n"


def _blocks_text(ds, split, tok):
    """Per block: the decoded inputs plus the last real target, i.e. the block's own text."""
    sp = ds.split(split)
    out = []
    for x, t in zip(sp.inputs.tolist(), sp.targets.tolist()):
        real = [v for v in t if v != IGNORE_INDEX]
        out.append(tok.decode(x[: len(real)] + real[-1:]))
    return out


def test_text_char_blocks_cover_the_text_in_disjoint_spans():
    text = _sentences()
    ds = load_text(text.encode(), block_size=16, val_fraction=0.1, test_fraction=0.1, seed=0)
    tok = ds.tokenizer
    assert ds.task == "causal_lm" and ds.vocab_size == tok.vocab_size == ds.size and ds.num_classes is None
    spans = ds.load_report["spans"]
    covered = sorted((a, b) for s in SPLITS for a, b in spans[s])
    assert covered[0][0] == 0 and covered[-1][1] == len(text)
    assert all(prev[1] == nxt[0] for prev, nxt in zip(covered, covered[1:])), "spans must tile the text"
    assert len(spans["val"]) == 1 and len(spans["test"]) == 1, "val and test are each one contiguous run"
    for s in SPLITS:
        sp = ds.split(s)
        assert sp.inputs.shape[1] == 16 and sp.inputs.dtype == torch.long and sp.targets.dtype == torch.long
        # targets are the inputs shifted by one wherever both are real tokens
        real = sp.targets[:, 1:] != IGNORE_INDEX  # position j + 1 holds a real input token
        assert torch.equal(sp.targets[:, :-1][real], sp.inputs[:, 1:][real])
        # the split's blocks, in order, are exactly its spans of the text (every character is in train)
        assert "".join(_blocks_text(ds, s, tok)) == "".join(text[a:b] for a, b in spans[s])
    assert ds.load_report["heldout_unk_rate"] == 0
    # blocks of 16 + 1 characters (a tail of >= 2 is kept); 10% of the blocks in val and in test
    n_blocks = sum(ds.load_report["blocks"].values())
    assert n_blocks == len(text) // 17 + (len(text) % 17 >= 2)
    assert ds.load_report["blocks"]["val"] == ds.load_report["blocks"]["test"] == round(0.1 * n_blocks)


def test_text_pads_the_last_block_and_marks_it_with_ignore_index():
    text = "abcdefghij" * 3 + "xyz"  # 33 characters: blocks of 5 + 1 -> 5 full blocks and a 3-character tail
    ds = load_text(text.encode(), block_size=5, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert ds.load_report["tokens_dropped"] == 0 and sum(ds.load_report["blocks"].values()) == 6
    last = [s for s in SPLITS if any(b == 33 for _, b in ds.load_report["spans"][s])][0]
    sp = ds.split(last)
    tail = [i for i in range(len(sp)) if (sp.targets[i] == IGNORE_INDEX).any()]
    assert len(tail) == 1
    x, t = sp.inputs[tail[0]], sp.targets[tail[0]]
    tok = ds.tokenizer
    assert t.tolist()[2:] == [IGNORE_INDEX] * 3 and x.tolist()[2:] == [tok.pad_id] * 3
    assert tok.decode(x.tolist()) in ("xy", "<unk>y", "x<unk>", "<unk><unk>")
    one_left = load_text(("abcdefghij" * 3 + "x").encode(), block_size=5, val_fraction=0.2, test_fraction=0.2)
    assert one_left.load_report["tokens_dropped"] == 1  # a 1-token tail predicts nothing


def test_text_vocabulary_comes_from_the_train_split_only():
    rng = np.random.default_rng(0)
    text = "".join(chr(c) for c in rng.integers(0x400, 0x400 + 250, size=600))  # Cyrillic-range soup
    ds = load_text(text.encode(), block_size=20, seed=2)
    spans = ds.load_report["spans"]
    train_chars = set("".join(text[a:b] for a, b in spans["train"]))
    held_chars = set("".join(text[a:b] for s in ("val", "test") for a, b in spans[s]))
    assert held_chars - train_chars, "fixture should have characters seen only outside train"
    tok = ds.tokenizer
    assert tok.vocab == ["<pad>", "<unk>"] + sorted(train_chars)  # code-point order, specials first
    unseen = sorted(held_chars - train_chars)
    for s in ("val", "test"):
        sp = ds.split(s)
        decoded = _blocks_text(ds, s, tok)
        expect = [text[a:b] for a, b in spans[s]]
        expect = "".join(expect)
        for ch in unseen:
            expect = expect.replace(ch, "<unk>")
        assert "".join(decoded) == expect
        assert sp.inputs.max() < tok.vocab_size
    assert ds.load_report["heldout_unk_rate"] > 0


def test_text_splits_are_seeded():
    text = _sentences(120).encode()
    a = load_text(text, block_size=8, seed=4)
    b = load_text(text, block_size=8, seed=4)
    assert a.load_report["spans"] == b.load_report["spans"]
    for s in SPLITS:
        assert torch.equal(a.split(s).inputs, b.split(s).inputs) and torch.equal(a.split(s).targets, b.split(s).targets)
    layouts = {json.dumps(load_text(text, block_size=8, seed=k).load_report["spans"]) for k in range(6)}
    assert len(layouts) > 1


def test_text_word_tokenizer_round_trips(tmp_path):
    text = _sentences(60)
    path = tmp_path / "story.txt"
    path.write_text(text, encoding="utf-8")
    ds = load_text(path, tokenizer="word", block_size=12)
    assert ds.name == "story.txt"
    tok = ds.tokenizer
    assert isinstance(tok, WordTokenizer)
    assert tok.decode(tok.encode(text)) == text  # every word of this text is in train
    assert "".join(_blocks_text(ds, "train", tok)) == "".join(
        "".join(tok.split(text)[a:b]) for a, b in ds.load_report["spans"]["train"]
    )
    assert ds.load_report["tokens"] == len(tok.split(text))


def test_text_accepts_uploads_bom_and_windows_line_ends():
    raw = ("\ufeff" + "line one\r\nline two\r\n" * 10).encode("utf-8")
    upload = io.BytesIO(raw)
    upload.name = "notes.txt"
    ds = load_text(upload, block_size=8)
    assert ds.name == "notes.txt" and ds.load_report["characters"] == len("line one\nline two\n" * 10)
    assert "\r" not in ds.tokenizer.vocab and "\ufeff" not in ds.tokenizer.vocab


def test_text_refuses_bad_input(tmp_path):
    with pytest.raises(ValueError, match=r"is empty\. Expected a UTF-8 text"):
        load_text(b"")
    with pytest.raises(ValueError, match=r"is empty \(only whitespace\)"):
        load_text(b" \n\t\n")
    latin1 = "caf\u00e9 au lait, ".encode("latin-1") * 3
    with pytest.raises(ValueError, match=r"byte 0xe9 at byte offset 3 \(line 1\).*Re-save it as UTF-8"):
        load_text(latin1)
    with pytest.raises(ValueError, match=r"byte 0xff at byte offset 10 \(line 3\)"):
        load_text(b"\xef\xbb\xbfab\ncd\nx\xff")
    with pytest.raises(ValueError, match=r"UTF-16 byte-order mark"):
        load_text("hello".encode("utf-16"))
    with pytest.raises(ValueError, match=r"too short: 20 char tokens make 1 block.*at least 195 tokens"):
        load_text(b"a" * 20, block_size=64)
    with pytest.raises(ValueError, match=r"'tokenizer' parameter.*'char' or 'word'. Got 'bpe'"):
        load_text(b"abc" * 100, tokenizer="bpe")
    with pytest.raises(ValueError, match=r"'block_size' parameter"):
        load_text(b"abc" * 100, block_size=0)
    with pytest.raises(ValueError, match=r"over the limit max_bytes=10 "):
        load_text(b"abc" * 100, max_bytes=10)
    with pytest.raises(ValueError, match=r"no such file"):
        load_text(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match=r"no such file.*pass bytes \(for text: text.encode\('utf-8'\)\)"):
        load_text("some text held in a str\n" * 20)
    with pytest.raises(ValueError, match=r"binary mode"):
        load_text(io.StringIO("text mode"))
    with pytest.raises(ValueError, match=r"file path, bytes, or a binary file object. Got int"):
        load_text(12)


# ----------------------------------------------------------------------------- tokenizers


def test_char_tokenizer_encode_decode_tokens_and_json_round_trip():
    tok = CharTokenizer.from_text("hello world\n")
    assert tok.vocab == ["<pad>", "<unk>", "\n", " ", "d", "e", "h", "l", "o", "r", "w"]
    ids = tok.encode("hold me\n")
    assert ids == [6, 8, 7, 4, 3, 1, 5, 2] and tok.decode(ids) == "hold <unk>e\n"
    assert tok.tokens(ids) == ["h", "o", "l", "d", "␣", "<unk>", "e", "↵"]
    assert tok.decode([tok.pad_id, 6, tok.pad_id]) == "h"
    back = CharTokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert back == tok and back.encode("hold me\n") == ids
    assert tokenizer_from_dict(tok.to_dict()) == tok
    with pytest.raises(ValueError, match=r"token ids in \[0, 10\]. Got 11"):
        tok.decode([11])
    with pytest.raises(ValueError, match=r"holds a CharTokenizer"):
        WordTokenizer.from_dict(tok.to_dict())
    with pytest.raises(ValueError, match=r"must start with \['<pad>', '<unk>'\]"):
        CharTokenizer(["a", "b"])
    with pytest.raises(ValueError, match=r"'vocab' list"):
        tokenizer_from_dict({"kind": "bpe", "vocab": []})


def test_word_tokenizer_vocabulary_order_and_cap():
    text = "b a b, c a b!\n\nc"
    tok = WordTokenizer.from_text(text)
    assert tok.split(text) == ["b", " ", "a", " ", "b", ",", " ", "c", " ", "a", " ", "b", "!", "\n\n", "c"]
    # by count (space 5, b 3, a 2, c 2, then singles), ties in code-point order
    assert tok.vocab == ["<pad>", "<unk>", " ", "b", "a", "c", "\n\n", "!", ","]
    assert tok.decode(tok.encode(text)) == text
    assert tok.tokens(tok.encode("c\n\n")) == ["c", "↵↵"]
    small = WordTokenizer.from_text(text, max_vocab=5)
    assert small.vocab == ["<pad>", "<unk>", " ", "b", "a"]
    assert small.decode(small.encode("a c!")) == "a <unk><unk>"
    assert WordTokenizer.from_text(text, min_count=2).vocab == ["<pad>", "<unk>", " ", "b", "a", "c"]
    assert WordTokenizer.from_dict(json.loads(json.dumps(tok.to_dict()))) == tok
    with pytest.raises(ValueError, match=r"'max_vocab' parameter.*>= 3"):
        WordTokenizer.from_text(text, max_vocab=2)
