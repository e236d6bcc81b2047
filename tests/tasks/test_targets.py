"""Multi-label and regression targets (issue 29): the parsing and the rules in
`transferkit.tasks.targets`, the layer and loss that carry them, their reports, and one run of
each target for each modality on the tiny stand-ins, from the command line as a user runs it:
train -> predict -> evaluate -> load -> ONNX export with parity. Bad labels and manifests are
in `test_target_inputs_*` below; real data is in `benchmarks/targets.py` and the slow suite."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

import transferkit
from transferkit.errors import DataError, InputError
from transferkit.layers import ClassLabels, StandardisedHuber
from transferkit.reports.targets import multilabel_metrics, regression_metrics
from transferkit.tasks.targets import (
    DEFAULT_THRESHOLD,
    choose_thresholds,
    parse_label_sets,
    parse_values,
    split_keys,
)
from transferkit.testing import TINY_BACKBONE, toy_tagged_texts, write_image_targets


def _cli(argv) -> tuple[int, str, str]:
    from conftest import _run_cli

    return _run_cli([str(a) for a in argv])


# -- parsing ------------------------------------------------------------------------------------


def test_label_sets_are_split_on_semicolons_stripped_and_deduplicated():
    parsed = parse_label_sets([" money fx ;grain", "grain;grain", ["acq", "grain"], "", None,
                               " ; ", ()])
    assert parsed.names == ["acq", "grain", "money fx"]
    # An empty cell is missing (left out); an empty tuple (a row of 0/1 columns all 0) is an
    # example of none of the labels (kept).
    np.testing.assert_array_equal(parsed.values, [[0, 1, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    assert parsed.kept.tolist() == [0, 1, 2, 6]
    assert set(parsed.bad) == {3, 4, 5} and "use 0/1 columns" in parsed.bad[3]


def test_labels_that_differ_only_in_case_are_refused_with_both_spellings():
    with pytest.raises(DataError, match="differ only in case: 'Red' and 'red'"):
        parse_label_sets(["Red;shirt", "red;dress"])


def test_a_label_unknown_to_the_model_is_named():
    with pytest.raises(DataError, match=r"not among the model's labels.*\['hat'\]"):
        parse_label_sets(["shirt;hat"], names=["dress", "shirt"])


def test_one_label_in_all_is_not_multi_label():
    with pytest.raises(DataError, match="at least two labels.*--target single-label"):
        parse_label_sets(["cat", "cat;cat"])


def test_regression_targets_leave_out_what_is_not_a_finite_number():
    parsed = parse_values(["23", " 4.5 ", "abc", "nan", "inf", 7, None])
    np.testing.assert_array_equal(parsed.values, [23.0, 4.5, 7.0])
    assert parsed.kept.tolist() == [0, 1, 5]
    assert "'abc' is not a number" in parsed.bad[2]
    assert "not a finite number" in parsed.bad[3] and "not a finite number" in parsed.bad[4]
    assert 6 in parsed.bad


def test_multi_label_splits_stratify_by_each_example_s_rarest_label():
    values = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 1], [0, 1, 0]], dtype=np.float32)
    # label counts: 3, 2, 1; each row's rarest present label
    assert split_keys("multi-label", values).tolist() == [0, 1, 2, 1]


def test_examples_of_no_label_are_a_stratum_of_their_own():
    values = np.asarray([[1, 0], [0, 1], [0, 0], [1, 1], [0, 0]], dtype=np.float32)
    assert split_keys("multi-label", values).tolist() == [0, 1, 2, 0, 2]


def test_regression_splits_stratify_by_quantile_bins_over_the_whole_range():
    values = np.arange(100, dtype=np.float64)
    keys = split_keys("regression", values)
    assert sorted(set(keys.tolist())) == [0, 1, 2, 3, 4]
    assert all((keys == k).sum() == 20 for k in range(5))


def test_thresholds_maximise_each_label_s_f1_and_rare_labels_keep_the_default():
    truth = np.array([[1, 1], [1, 0], [1, 0], [0, 0], [0, 0]])
    scores = np.array([[0.30, 0.9], [0.25, 0.1], [0.28, 0.2], [0.10, 0.3], [0.05, 0.4]])
    thresholds, how = choose_thresholds(truth, scores, ["a", "b"])
    # label a: 0.5 finds none of its positives; everything >= 0.25 is exactly them, and the cut
    # sits halfway between the lowest positive (0.25) and the highest negative (0.10)
    assert thresholds[0] == pytest.approx(0.175)
    assert thresholds[1] == DEFAULT_THRESHOLD and how["default"] == {"b": 1}
    assert how["tuned"] == ["a"]


def test_a_threshold_moves_only_when_a_cut_is_strictly_better_than_one_half():
    truth = np.array([[1], [1], [1], [0], [0]])
    separated = np.array([[0.9], [0.8], [0.7], [0.2], [0.1]])  # 0.5 is already perfect
    assert choose_thresholds(truth, separated, ["a"])[0] == [DEFAULT_THRESHOLD]


# -- the layer, the loss, the metrics ---------------------------------------------------------------


def test_the_labels_layer_gives_sigmoids_or_values_in_the_user_s_units():
    logits = np.array([[0.0, 2.0], [-1.0, 0.5]], dtype=np.float32)
    multi = ClassLabels(["a", "b"], task="image", target="multi-label")
    np.testing.assert_allclose(multi(logits), 1 / (1 + np.exp(-logits)), rtol=1e-6)
    value = ClassLabels(["age"], task="image", target="regression", target_mean=30.0,
                        target_scale=12.0)
    np.testing.assert_allclose(value(logits[:, :1]), logits[:, :1] * 12 + 30, rtol=1e-6)
    again = ClassLabels.from_config(value.get_config())
    assert (again.target, again.target_mean, again.target_scale) == ("regression", 30.0, 12.0)


def test_the_regression_loss_is_huber_on_standardised_targets():
    y, z = np.array([[40.0], [10.0]]), np.array([[0.5], [-0.2]], dtype=np.float32)
    loss = StandardisedHuber(mean=30.0, scale=10.0, delta=1.0)
    expected = keras.losses.Huber(delta=1.0)((y - 30.0) / 10.0, z)
    np.testing.assert_allclose(float(loss(y, z)), float(expected), rtol=1e-6)
    assert StandardisedHuber.from_config(loss.get_config()).scale == 10.0


def test_multi_label_metrics_count_the_sets_at_their_thresholds():
    truth = np.array([[1, 0], [1, 1], [0, 1]])
    scores = np.array([[0.9, 0.2], [0.6, 0.4], [0.3, 0.7]])
    metrics = multilabel_metrics(truth, scores, ["a", "b"], [0.5, 0.5])
    # predicted [[1,0],[1,0],[0,1]]: tp 3, fp 0, fn 1
    assert metrics["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 0 + 1))
    assert metrics["label_cardinality"] == {"true": pytest.approx(4 / 3), "predicted": 1.0}
    assert metrics["subset_accuracy"] == pytest.approx(2 / 3)
    assert metrics["per_label"]["b"]["recall"] == 0.5


def test_regression_metrics_compare_with_the_mean_predictor():
    truth, predicted = np.array([1.0, 2.0, 3.0, 6.0]), np.array([1.5, 2.0, 2.0, 5.0])
    metrics = regression_metrics(truth, predicted, baseline=2.0)
    assert metrics["mae"] == pytest.approx(np.abs(truth - predicted).mean())
    assert metrics["rmse"] == pytest.approx(np.sqrt(((truth - predicted) ** 2).mean()))
    residual = ((truth - predicted) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert metrics["r2"] == pytest.approx(1 - residual)
    assert metrics["mean_predictor_mae"] == pytest.approx(np.abs(truth - 2.0).mean())


# -- one run of each target and modality, from the command line -----------------------------------

RUNS = [("images", "multi-label"), ("images", "regression"), ("text", "multi-label"),
        ("text", "regression")]


@pytest.fixture(scope="module")
def target_data(tmp_path_factory, vectors_file):
    root = tmp_path_factory.mktemp("targets")
    # The images' labels are 0/1 columns (found by their contents: no `labels` column), with
    # examples of no label; the texts' are `;`-separated: both forms run end to end.
    images = write_image_targets(root / "images", 48, flags=True)
    texts, labels, values = toy_tagged_texts(84)
    table = root / "texts.csv"
    table.write_text("text,labels,target\n" + "".join(
        f"{t},{y},{v}\n" for t, y, v in zip(texts, labels, values)), encoding="utf-8")
    return {"images": images, "text": table, "vectors": vectors_file, "root": root}


@pytest.fixture(scope="module", params=RUNS, ids=["-".join(r) for r in RUNS])
def target_run(request, target_data):
    kind, target = request.param
    run = target_data["root"] / f"run-{kind}-{target}"
    if kind == "images":
        args = [target_data["images"], "--backbone", TINY_BACKBONE, "--augment", "flip",
                "--augment-views", "1", "--epochs", "20", "--learning-rate", "0.01",
                "--batch-size", "8"]
    else:
        args = [target_data["text"], "--encoder", "glove-bilstm", "--word-vectors",
                target_data["vectors"], "--max-length", "16", "--epochs", "8",
                "--learning-rate", "0.01", "--batch-size", "8"]
    code, out, err = _cli(["train", kind, *args, "--target", target, "--fine-tune-epochs", "1",
                           "--output", run, "--json"])
    assert code == 0, err[-3000:]
    data = target_data["images"] if kind == "images" else target_data["text"]
    return kind, target, run, json.loads(out.strip().splitlines()[-1]), data


def test_a_run_reports_its_target_s_numbers(target_run):
    kind, target, run, result, _ = target_run
    split = "validation" if kind == "images" else "test"
    assert result["target"] == target
    report = json.loads((run / "report" / "metrics.json").read_text())
    if target == "multi-label":
        assert result[f"{split}_micro_f1"] == report["micro_f1"]
        assert set(report["per_label"]) == set(result["classes"])
        assert (run / "report" / "pr_curves.png").stat().st_size > 10_000
        # the toy labels are learnable: better than predicting every label for every example
        truth = report["label_cardinality"]["true"] / len(result["classes"])
        assert report["micro_f1"] > 2 * truth / (1 + truth)
    else:
        assert result[f"{split}_mae"] == report["mae"]
        assert report["mae"] < report["mean_predictor_mae"]
        for name in ("predicted_vs_actual", "residuals"):
            assert (run / "report" / f"{name}.png").stat().st_size > 10_000
    summary = (run / "report" / "summary.txt").read_text()
    assert ("micro F1" if target == "multi-label" else "MAE") in summary
    assert "calibration" in summary and "none:" in summary  # said why not


def test_predict_gives_a_label_set_or_a_value(target_run):
    kind, target, run, _, data = target_run
    inputs = ([str(p) for p in sorted((data.parent / "images").glob("*.png"))[:3]]
              if kind == "images" else ["good fun lovely film", "awful and dull"])
    code, out, err = _cli(["predict", run, *inputs, "--json"])
    assert code == 0, err
    answers = json.loads(out)
    model = transferkit.load(run)
    outputs = model.predict_proba(inputs)
    for answer, row in zip(answers, outputs):
        if target == "regression":
            assert answer["value"] == pytest.approx(float(row[0]), rel=1e-5)
        else:
            assert list(answer["scores"]) == model.class_names
            expected = [name for name, p, t in zip(model.class_names, row, model.thresholds)
                        if p >= t]
            assert sorted(answer["labels"]) == sorted(expected)


def test_evaluate_reports_the_issue_s_keys(target_run):
    kind, target, run, _, data = target_run
    code, out, err = _cli(["evaluate", run, data, "--json"])
    assert code == 0, err
    metrics = json.loads(out)
    keys = (("micro_f1", "macro_f1", "mean_average_precision") if target == "multi-label"
            else ("mae", "rmse", "r2"))
    assert all(isinstance(metrics[key], float) for key in keys)
    assert metrics["n"] == (48 if kind == "images" else 84)
    code, out, err = _cli(["evaluate", run, data])
    assert code == 0 and ("micro F1" in out if target == "multi-label" else "MAE" in out), err


def test_the_saved_model_keeps_its_target_and_exports_with_parity(target_run, tmp_path):
    kind, target, run, _, data = target_run
    model = transferkit.load(run)
    assert model.target == target
    if target == "multi-label":
        assert len(model.thresholds) == len(model.class_names)
        assert model.metadata["threshold_rule"]["rule"].startswith("per label, the F1-optimal")
    else:
        mean, scale = model.metadata["target_standardisation"]
        assert scale > 0
    if kind == "text" and target == "multi-label":
        return  # one text export is enough for the contract's time; the other three run
    result = model.export(tmp_path / "onnx", format="onnx")
    assert result["verified"]["max_abs_diff"] <= 1e-4
    contract = json.loads((tmp_path / "onnx" / "input.json").read_text())
    assert contract["target"] == target
    card = (tmp_path / "onnx" / "MODEL_CARD.md").read_text()
    if target == "multi-label":
        assert contract["thresholds"] == pytest.approx(model.thresholds)
        assert "multi-label classifier" in card and "micro F1" in card and "| threshold |" in card
    else:
        assert "regression model" in card and "MAE" in card and "probabilities" not in card


# -- bad input --------------------------------------------------------------------------------------


def test_target_inputs_a_manifest_lists_what_it_left_out(tmp_path):
    table = write_image_targets(tmp_path / "data", 24)
    lines = table.read_text().splitlines()
    (tmp_path / "outside.png").write_bytes((tmp_path / "data" / lines[1].split(",")[0]).read_bytes())
    lines += ["../outside.png,face,10", "/etc/hostname,face,10", "images/missing.png,face,10",
              "images/000.png,face,inf", "images/001.png,face,abc", "images/002.png,face,nan"]
    table.write_text("\n".join(lines) + "\n")
    model = transferkit.ImageClassifier(TINY_BACKBONE, weights=None, augment="none",
                                        target="regression", cache_dir=False)
    model.fit(table, epochs=1, verbose=0)
    reasons = [entry["reason"] for entry in model.skipped]
    assert sum("outside the table's folder" in r for r in reasons) == 2
    assert sum("no such file" in r for r in reasons) == 1
    assert sum("missing label" in r for r in reasons) == 1  # nan: the table reader's drop
    assert sum("not a number" in r for r in reasons) == 1
    assert sum("not a finite number" in r for r in reasons) == 1
    assert len(model.split_data("train")[0]) + len(model.split_data("validation")[0]) == 24


def test_target_inputs_a_folder_cannot_be_multi_label(faces, tmp_path):
    code, _, err = _cli(["train", "images", faces, "--target", "multi-label", "--backbone",
                         TINY_BACKBONE, "--output", tmp_path / "run"])
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "needs a table of image paths and labels" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("cells", "message"), [
    (["Red;shirt", "red;dress", "blue;shirt"], "differ only in case"),
    (["shirt", "shirt", "shirt"], "at least two labels"),
])
def test_target_inputs_bad_label_sets_are_one_line(tmp_path, vectors_file, cells, message):
    table = tmp_path / "t.csv"
    table.write_text("text,labels\n" + "".join(f"text {i} good,{c}\n" for i, c in
                                              enumerate(cells * 4)))
    code, _, err = _cli(["train", "text", table, "--target", "multi-label", "--encoder",
                         "glove-bilstm", "--word-vectors", vectors_file, "--output",
                         tmp_path / "run"])
    assert code == 1 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("header", "row", "flags", "message"), [
    ("text,topic,score", "{t},sports,3", [], "found 0 0/1 column(s)"),
    ("text,a,b", "{t},1,0", ["--label-column", "a,c"], "no column named 'c' among the 0/1"),
])
def test_target_inputs_a_table_without_usable_label_columns_is_one_line(
        tmp_path, vectors_file, header, row, flags, message):
    table = tmp_path / "t.csv"
    table.write_text(header + "\n" + "".join(row.format(t=f"text {i}") + "\n" for i in range(8)))
    code, _, err = _cli(["train", "text", table, "--target", "multi-label", *flags, "--encoder",
                         "glove-bilstm", "--word-vectors", vectors_file, "--output",
                         tmp_path / "run"])
    assert code == 1 and len(err.strip().splitlines()) == 1 and message in err, err
    assert "--label-column" in err or "Columns:" in err
    assert not (tmp_path / "run").exists()


_INFERRED_ARGS = ["--encoder", "glove-bilstm", "--max-length", "16", "--epochs", "1", "--json"]


@pytest.mark.slow  # ~20 s: a training run
def test_the_target_comes_from_the_table_and_is_said(tmp_path, vectors_file):
    """No --target: a `target` column of numbers makes a regression run, said in the log."""
    texts, _, values = toy_tagged_texts(40)
    table = tmp_path / "t.csv"
    table.write_text("text,target\n" + "".join(f"{t},{v}\n" for t, v in zip(texts, values)))
    code, out, err = _cli(["train", "text", table, *_INFERRED_ARGS, "--word-vectors",
                           vectors_file, "--output", tmp_path / "run"])
    assert code == 0, err
    assert "Target: regression, from the table's 'target' column" in err
    assert json.loads(out.strip().splitlines()[-1])["target"] == "regression"


def test_target_inputs_columns_of_two_targets_are_one_line(tmp_path, vectors_file):
    """A table with columns of two targets and no --target: one line asking for it, no folder."""
    texts, labels, values = toy_tagged_texts(40)
    args = [*_INFERRED_ARGS, "--word-vectors", vectors_file]
    both = tmp_path / "both.csv"
    both.write_text("text,labels,target\n" + "".join(
        f"{t},{y},{v}\n" for t, y, v in zip(texts, labels, values)))
    code, _, err = _cli(["train", "text", both, *args, "--output", tmp_path / "run2"])
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Choose with --target" in err
    assert not (tmp_path / "run2").exists()


def test_target_inputs_an_unknown_target_is_refused():
    with pytest.raises(InputError, match="`target` must be one of single-label, multi-label, "
                                         "regression"):
        transferkit.TextClassifier(target="multilabel")
    from transferkit.cli import build_parser

    with pytest.raises(SystemExit):  # argparse: "invalid choice: 'ordinal' (choose from ...)"
        build_parser().parse_args(["train", "text", "x.csv", "--target", "ordinal"])


def test_config_choices_and_the_targets_module_agree():
    from transferkit.config import TARGET_CHOICES
    from transferkit.tasks.targets import TARGETS

    assert TARGET_CHOICES == TARGETS
    assert Path(transferkit.__file__).is_file()


def test_batch_predict_and_the_server_give_the_target_s_answers(target_run, tmp_path):
    kind, target, run, _, _ = target_run
    if kind != "text":
        pytest.skip("the text runs cover batch jobs and serving (the same code for images; "
                    "the image runs' predict covers their outputs)")
    import pandas as pd
    import requests

    from transferkit.serving.app import background_server, create_app
    from transferkit.serving.predictors import load_predictor

    texts = ["good fun lovely film", "awful and dull", "great but boring"]
    inputs = tmp_path / "in.csv"
    inputs.write_text("text\n" + "".join(f"{t}\n" for t in texts))
    code, _, err = _cli(["predict", run, inputs, "--output", tmp_path / "out"])
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "out").sort_values("index")
    model = transferkit.load(run)
    expected = model.predict(texts)
    with background_server(create_app(load_predictor(run), max_wait_ms=10)) as url:
        served = requests.post(url + "/predict", json={"texts": texts}, timeout=60).json()
    if target == "regression":
        np.testing.assert_allclose(table["value"], [e["value"] for e in expected], rtol=1e-5)
        np.testing.assert_allclose([s["value"] for s in served], table["value"], rtol=1e-5)
    else:
        assert table["labels"].tolist() == [";".join(e["labels"]) for e in expected]
        assert [s["labels"] for s in served] == [e["labels"] for e in expected]
        for name in model.class_names:
            np.testing.assert_allclose(table[f"score_{name}"],
                                       [e["scores"][name] for e in expected], rtol=1e-5)


# -- likely label errors ------------------------------------------------------------------------


def test_wrong_label_sets_are_found_by_multi_label_confident_learning():
    from transferkit.reports.label_issues import multilabel_label_issues

    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 8))
    features[:, :3] = np.sign(features[:, :3]) * (1 + np.abs(features[:, :3]))  # a margin
    labels = (features[:, :3] > 0).astype(np.float32)  # label j: feature j is positive
    empty = labels.sum(axis=1) == 0
    labels[empty, 0], features[empty, 0] = 1, np.abs(features[empty, 0])
    flipped = np.arange(0, 300, 30)  # ten sets with one label swapped on or off
    labels[flipped, 1] = 1 - labels[flipped, 1]
    issues, folds, why = multilabel_label_issues(features, labels)
    assert why == "" and folds == 5
    found = {issue["index"] for issue in issues}
    assert len(found & set(flipped.tolist())) >= 8 and len(found - set(flipped.tolist())) <= 4
    top = issues[0]
    assert top["given"] == np.flatnonzero(labels[top["index"]]).tolist()


def test_wrong_regression_targets_are_found():
    from transferkit.reports.label_issues import regression_label_issues

    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 5))
    values = features @ np.array([3.0, -2.0, 1.0, 0.5, 0.0]) + rng.normal(0, 0.3, 200)
    wrong = np.array([5, 50, 120, 180])
    values[wrong] += np.array([15.0, -12.0, 20.0, -18.0])
    issues, _, why = regression_label_issues(features, values)
    assert why == ""
    found = [issue["index"] for issue in issues]
    assert set(wrong.tolist()) <= set(found) and len(found) <= 6
    first = issues[0]
    assert abs(first["suggested"] - first["given"]) > 10  # the prediction is the clean value


@pytest.mark.slow  # ~15-20 s each: MLflow's import, a store and a model upload
def test_the_mlflow_model_names_its_output_for_the_target(target_run, tmp_path):
    """`runs upload`: the logged MLflow model's signature says what its output is (label
    probabilities, or the value), its metadata which label each column is, and MLflow's loader
    gives what transferkit gives."""
    kind, target, run, _, data = target_run
    if (kind, target) not in {("text", "multi-label"), ("images", "regression")}:
        pytest.skip("two runs cover the signature (one per target; the modality is its input)")
    import mlflow
    import mlflow.keras

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, out, err = _cli(["runs", "upload", run, "--track", store, "--json"])
    assert code == 0, err
    uri = f"runs:/{json.loads(out)['run_id']}/model"
    mlflow.set_tracking_uri(store)
    try:
        loaded, info = mlflow.keras.load_model(uri), mlflow.models.get_model_info(uri)
    finally:
        mlflow.set_tracking_uri(None)
    model = transferkit.load(run)
    output = info.signature.outputs.to_dict()[0]
    assert output["name"] == ("label_probabilities" if target == "multi-label" else "value")
    assert output["tensor-spec"]["shape"] == (-1, len(model.class_names))
    assert info.metadata["transferkit_target"] == target
    assert info.metadata["output_names"] == model.class_names
    if target == "multi-label":
        assert info.metadata["thresholds"] == pytest.approx(model.thresholds)
        inputs = np.asarray(["good fun lovely film", "awful and dull"], dtype=object)
    else:
        from transferkit.data.images import load_image

        inputs = load_image(sorted((data.parent / "images").glob("*.png"))[0])[None]
        inputs = inputs.astype("float32")
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0),
                               model.model.predict(inputs, verbose=0), atol=1e-6)


def test_the_head_s_defaults_depend_on_the_target():
    """Multi-label and regression heads get more epochs and patience on images, and a lower
    learning rate for a regression head on a sentence encoder (measured: benchmarks/targets.py);
    single-label keeps its defaults, and a value given wins."""
    from transferkit.config import IMAGE_HEAD_EPOCHS, ImageTrainConfig

    single = transferkit.ImageClassifier(TINY_BACKBONE)._train_defaults()
    multi = transferkit.ImageClassifier(TINY_BACKBONE, target="multi-label")._train_defaults()
    assert (single.epochs, single.patience) == (20, 5)
    assert (multi.epochs, multi.patience) == (100, 10) == (IMAGE_HEAD_EPOCHS["regression"], 10)
    assert single.learning_rate == multi.learning_rate == ImageTrainConfig.learning_rate
    text = [transferkit.TextClassifier("minilm", target=t)._train_defaults().learning_rate
            for t in ("single-label", "multi-label", "regression")]
    assert text == [1e-3, 1e-3, 1e-4]
    glove = transferkit.TextClassifier("glove-bilstm", target="regression")._train_defaults()
    assert glove.learning_rate == 3e-4  # its own default: no regression rate of its own


def test_explain_works_per_label_and_for_values(target_run):
    """Explanations of the target heads: multi-label explains the highest-scoring label (or the
    one asked for), regression the value; the words/map come back as for single-label."""
    kind, target, run, _, data = target_run
    model = transferkit.load(run)
    inputs = ([str(p) for p in sorted((data.parent / "images").glob("*.png"))[:2]]
              if kind == "images" else ["good fun lovely film", "awful and dull"])
    results = model.explain(inputs)
    for result, answer in zip(results, model.predict(inputs)):
        if target == "regression":
            assert result["explained"] == model.class_names[0]
            assert result["score"] == pytest.approx(answer["value"], rel=1e-5)
        else:
            assert result["explained"] == max(answer["scores"], key=answer["scores"].get)
        assert ("map" in result) == (kind == "images") and ("words" in result) == (kind == "text")
    if target == "multi-label":
        other = model.class_names[-1]
        (chosen,) = model.explain(inputs[:1], label=other)
        assert chosen["explained"] == other
        assert chosen["score"] == pytest.approx(model.predict(inputs[:1])[0]["scores"][other])
