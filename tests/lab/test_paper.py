"""Checks on the transcribed paper numbers in jacnb.lab.paper (shape, ranges, spot-checked
cells)."""

import math

import pytest

pd = pytest.importorskip("pandas")

from jacnb.lab import paper  # noqa: E402

ALL_NAMES = sorted(paper.SOURCES)


def _cell(df, column="accuracy", **keys):
    sel = df
    for k, v in keys.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, f"{keys} matched {len(sel)} rows"
    return sel[column].iloc[0]


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_table_has_source_and_notes(name):
    df = paper.paper_table(name)
    assert isinstance(df, pd.DataFrame) and len(df) > 0
    assert df.attrs["source"] == paper.SOURCES[name]
    assert isinstance(df.attrs["notes"], list)
    assert all(isinstance(n, str) and n for n in df.attrs["notes"])
    # A fresh frame each call: mutating one must not leak into the next.
    df.iloc[0, 0] = "mutated"
    assert paper.paper_table(name).iloc[0, 0] != "mutated"


def test_sources_names():
    assert paper.SOURCES["table2"] == "Sokolic et al. 2017, Table II"
    assert paper.SOURCES["table6"] == "Sokolic et al. 2017, Table VI"
    assert set(ALL_NAMES) == {
        "table2",
        "table3",
        "table4",
        "table5",
        "table6",
        "oymak_clean",
        "oymak_corrupted",
    }


def test_dispatcher_rejects_unknown_name():
    with pytest.raises(ValueError, match="table2") as exc:
        paper.paper_table("table7")
    for name in ALL_NAMES:
        assert name in str(exc.value)


def test_table2_shape_and_values():
    df = paper.table2()
    assert len(df) == 24
    mnist = df[df.dataset == "MNIST"]
    assert sorted(mnist.n_train.unique()) == [1000, 5000, 20000, 50000]
    assert set(mnist.regularizer) == {"weight_decay", "jacobian"}
    assert len(mnist) == 4 * 2
    lared = df[df.dataset == "LaRED"]
    assert sorted(lared.n_train.unique()) == [2000, 5000, 10000, 50000]
    assert set(lared.test_set) == {"same subject", "different subject"}
    assert len(lared) == 4 * 2 * 2
    assert not df.duplicated(["dataset", "test_set", "n_train", "regularizer"]).any()
    assert df.accuracy.between(0, 100, inclusive="right").all()
    # The paper's claim: Jacobian regularization beats weight decay in every cell.
    wide = df.pivot_table(
        index=["dataset", "test_set", "n_train"], columns="regularizer", values="accuracy"
    )
    assert (wide["jacobian"] > wide["weight_decay"]).all()
    # Spot checks (verified by hand against the extracted text).
    assert _cell(df, dataset="MNIST", n_train=1000, regularizer="weight_decay") == 94.00
    assert _cell(df, dataset="MNIST", n_train=1000, regularizer="jacobian") == 96.03
    assert _cell(df, dataset="MNIST", n_train=50000, regularizer="jacobian") == 99.35
    assert _cell(df, test_set="same subject", n_train=10000, regularizer="weight_decay") == 87.01
    assert _cell(df, test_set="different subject", n_train=50000, regularizer="jacobian") == 46.78
    assert any("96.3" in n for n in df.attrs["notes"])


def test_table3():
    df = paper.table3()
    assert len(df) == 3 * 2
    assert sorted(df.n_train.unique()) == [2500, 10000, 50000]
    assert set(df.regularizer) == {"none", "jacobian"}
    assert (df.normalization == "batch_norm").all()
    assert df.accuracy.between(0, 100, inclusive="right").all()
    assert _cell(df, n_train=2500, regularizer="none") == 60.86
    assert _cell(df, n_train=10000, regularizer="jacobian") == 80.57
    assert _cell(df, n_train=50000, regularizer="jacobian") == 88.95


def test_table4():
    df = paper.table4()
    assert len(df) == 3 * 2
    assert df.accuracy.between(0, 100, inclusive="right").all()
    assert df.set_index("n_train").augmentation.to_dict() == {
        2500: False,
        10000: False,
        50000: True,
    }
    wide = df.pivot(index="n_train", columns="regularizer", values="accuracy")
    assert (wide["jacobian"] > wide["none"]).all()
    assert _cell(df, n_train=2500, regularizer="jacobian") == 62.79
    assert _cell(df, n_train=10000, regularizer="jacobian") == 78.70
    assert _cell(df, n_train=50000, regularizer="none") == 93.34


def test_table5():
    df = paper.table5()
    assert len(df) == 4
    assert set(zip(df.augmentation, df.regularizer, strict=True)) == {
        (False, "none"),
        (False, "jacobian"),
        (True, "none"),
        (True, "jacobian"),
    }
    for col in ["train_accuracy", "test_accuracy", "generalization_error"]:
        assert df[col].between(0, 100, inclusive="right").all()
    # GE = train - test for every printed row.
    assert ((df.train_accuracy - df.test_accuracy - df.generalization_error).abs() < 1e-9).all()
    # Numbers the prose repeats.
    assert _cell(df, "generalization_error", augmentation=False, regularizer="none") == 61.53
    assert _cell(df, "generalization_error", augmentation=False, regularizer="jacobian") == 23.83
    assert _cell(df, "generalization_error", augmentation=True, regularizer="none") == 13.14
    assert _cell(df, "generalization_error", augmentation=True, regularizer="jacobian") == 12.03
    assert _cell(df, "test_accuracy", augmentation=True, regularizer="jacobian") == 47.51
    assert _cell(df, "test_accuracy", augmentation=True, regularizer="none") == 46.75
    assert _cell(df, "train_accuracy", augmentation=False, regularizer="none") == 89.82


def test_table6():
    df = paper.table6()
    assert len(df) == 2 * 2
    assert (df.device == "Titan X").all()
    assert set(df.dataset) == {"MNIST", "ImageNet"}
    assert (df.seconds_per_batch > 0).all()
    reg = df[df.regularizer == "jacobian"]
    assert (reg.increase_factor > 1).all()
    assert df[df.regularizer == "none"].increase_factor.isna().all()
    assert _cell(df, "seconds_per_batch", dataset="MNIST", regularizer="none") == 0.003
    assert _cell(df, "seconds_per_batch", dataset="MNIST", regularizer="jacobian") == 0.030
    assert _cell(df, "increase_factor", dataset="MNIST", regularizer="jacobian") == 10.00
    assert _cell(df, "seconds_per_batch", dataset="ImageNet", regularizer="none") == 0.120
    assert _cell(df, "seconds_per_batch", dataset="ImageNet", regularizer="jacobian") == 0.190
    assert _cell(df, "increase_factor", dataset="ImageNet", regularizer="jacobian") == 1.580
    # The printed ratio agrees with the printed times to the times' rounding.
    for ds in ["MNIST", "ImageNet"]:
        t0 = _cell(df, "seconds_per_batch", dataset=ds, regularizer="none")
        t1 = _cell(df, "seconds_per_batch", dataset=ds, regularizer="jacobian")
        r = _cell(df, "increase_factor", dataset=ds, regularizer="jacobian")
        assert math.isclose(t1 / t0, r, rel_tol=0.01)


@pytest.mark.parametrize("corrupted", [False, True])
def test_oymak_alignment(corrupted):
    df = paper.oymak_alignment(corrupted)
    assert len(df) == 2 * 2 * 2
    assert set(df.jacobian) == {"initial", "final"}
    assert set(df.vector) == {"y", "r0"}
    assert set(df.space) == {"information", "nuisance"}
    assert df.fraction.between(0, 1).all()
    assert (df.corruption == (0.5 if corrupted else 0.0)).all()
    # Norm fractions on complementary subspaces: info^2 + nuisance^2 = 1 (to rounding).
    wide = df.pivot_table(index=["jacobian", "vector"], columns="space", values="fraction")
    assert ((wide.information**2 + wide.nuisance**2 - 1).abs() < 1e-3).all()
    # Training aligns labels with the information space.
    assert (wide.loc["final"].information > wide.loc["initial"].information).all()
    expected_name = "oymak_corrupted" if corrupted else "oymak_clean"
    assert df.attrs["source"] == paper.SOURCES[expected_name]


def test_oymak_spot_checks():
    clean = paper.oymak_alignment(corrupted=False)
    noisy = paper.oymak_alignment(corrupted=True)
    assert _cell(clean, "fraction", jacobian="initial", vector="y", space="information") == 0.38081
    assert _cell(clean, "fraction", jacobian="final", vector="r0", space="nuisance") == 0.1626
    assert _cell(noisy, "fraction", jacobian="initial", vector="y", space="nuisance") == 0.94481
    assert _cell(noisy, "fraction", jacobian="final", vector="y", space="information") == 0.8956
    # Corrupted labels leave more of the label norm in the nuisance space after training.
    assert _cell(noisy, "fraction", jacobian="final", vector="y", space="nuisance") > _cell(
        clean, "fraction", jacobian="final", vector="y", space="nuisance"
    )
