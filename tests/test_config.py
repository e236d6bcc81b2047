"""Settings as data: the config dataclasses are the one place a training default is written."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from pathlib import Path

import pytest

import transferkit
from transferkit.config import ImageTrainConfig, TextTrainConfig, read_config_file
from transferkit.errors import InputError
from transferkit.tasks.image_classifier import ImageClassifier
from transferkit.tasks.text_classifier import TextClassifier

SRC = Path(transferkit.__file__).parent
SETTINGS = {
    item.name for cls in (ImageTrainConfig, TextTrainConfig) for item in dataclasses.fields(cls)
}


def _literal(node) -> bool:
    """A default written as a value (`20`, `-1`, `"all"`, `(1, 2)`), not `None` or a name."""
    if node is None:
        return False
    if isinstance(node, ast.Constant):
        return node.value is not None
    if isinstance(node, ast.UnaryOp):
        return _literal(node.operand)
    if isinstance(node, (ast.Tuple, ast.List)):
        return bool(node.elts) and all(_literal(e) for e in node.elts)
    return False


def _written_defaults(tree: ast.AST):
    """`(line, what)` for every parameter or `--flag` named like a setting with a literal default."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
            pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
            for arg, default in pairs:
                if arg.arg in SETTINGS and _literal(default):
                    yield node.lineno, f"{node.name}({arg.arg}={ast.unparse(default)})"
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            flag = node.args[0] if node.args else None
            if isinstance(flag, ast.Constant) and str(flag.value).startswith("--"):
                name = str(flag.value)[2:].replace("-", "_")
                for keyword in node.keywords:
                    if keyword.arg == "default" and name in SETTINGS and _literal(keyword.value):
                        yield node.lineno, f"add_argument({flag.value}, default=...)"


def test_no_setting_has_a_default_written_outside_the_config():
    found = [
        f"{path.relative_to(SRC)}:{line} {what}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "config.py"
        for line, what in _written_defaults(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert found == [], "defaults written outside transferkit/config.py: " + "; ".join(found)


def test_the_scan_finds_a_written_default():
    code = "def fit(x, epochs=20, seed=None, name='x'):\n    parser.add_argument('--patience', default=5)"
    assert [what for _, what in _written_defaults(ast.parse(code))] == [
        "fit(epochs=20)", "add_argument(--patience, default=...)"
    ]


def test_the_library_defaults_are_the_config_values():
    image = inspect.signature(ImageClassifier.__init__).parameters
    for name in ("backbone", "dropout", "augment", "augment_views", "seed", "weights", "runtime"):
        assert image[name].default == getattr(ImageTrainConfig, name), name
    text = inspect.signature(TextClassifier.__init__).parameters
    assert text["encoder"].default == TextTrainConfig.encoder
    assert text["runtime"].default == TextTrainConfig.runtime


def test_names_agree_across_modalities():
    shared = {"epochs", "fine_tune_epochs", "learning_rate", "fine_tune_learning_rate",
              "batch_size", "patience", "fine_tune_patience", "validation_size", "seed", "data",
              "runtime", "weight_decay"}
    assert shared <= set(ImageTrainConfig.names()) & set(TextTrainConfig.names())
    for cls in (ImageClassifier, TextClassifier):
        parameters = inspect.signature(cls.fit).parameters
        assert {"epochs", "validation_size", "output", "weight_decay"} <= set(parameters)


def test_from_dict_checks_names_and_values():
    config = ImageTrainConfig.from_dict({"fine-tune-epochs": 0, "image_size": 96})
    assert config.fine_tune_epochs == 0 and config.image_size == 96
    assert config.replace(epochs=3).epochs == 3 and config.epochs == ImageTrainConfig.epochs
    assert ImageTrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(InputError, match=r"^c\.toml: unknown setting\(s\) epoch for "
                                         r"`train images`\. Known: data, backbone, "):
        ImageTrainConfig.from_dict({"epoch": 3}, source="c.toml")
    cases = [
        ({"epochs": -1}, r"`epochs` must be an int >= 0\. Received: epochs=-1\."),
        ({"epochs": True}, r"`epochs` must be an int >= 0\. Received: epochs=True\."),
        ({"learning_rate": 0}, r"`learning_rate` must be a number > 0"),
        ({"validation_size": 1}, r"`validation_size` must be a number in \(0, 1\)"),
        ({"dropout": 1.0}, r"`dropout` must be a number in \[0, 1\)"),
        ({"weight_decay": -0.1}, r"`weight_decay` must be a number >= 0"),
        ({"unfreeze": 0}, r"`unfreeze` as a number of top layers must be >= 1"),
        ({"image_size": 0}, r"`image_size` must be a positive int or a pair of them"),
    ]
    for values, message in cases:
        with pytest.raises(InputError, match=message):
            ImageTrainConfig(**values)
    with pytest.raises(InputError, match=r"`features` must be one of 'layers', 'sentence'"):
        TextTrainConfig(features="cls")
    with pytest.raises(InputError, match=r"`dropout` must be a number in \[0, 1\)"):
        TextTrainConfig(dropout=-0.5)
    with pytest.raises(InputError, match=r"`test_size \+ validation_size` must be below 1"):
        TextTrainConfig(test_size=0.5, validation_size=0.5)


def test_defaults_in_words_for_the_help():
    assert ImageTrainConfig.default_text("fine_tune_epochs") == "10"
    assert ImageTrainConfig.default_text("epochs") == "20; 100 for multi-label and regression"
    assert ImageTrainConfig.default_text("image_size") == "the backbone's"
    assert TextTrainConfig.default_text("fine_tune_learning_rate") == "the encoder's"
    assert TextTrainConfig.default_text("dropout") == "the encoder's"


def test_config_files(tmp_path):
    (tmp_path / "a.toml").write_text('epochs = 3\nfine-tune-epochs = 0\naugment = "none"\n')
    assert read_config_file(tmp_path / "a.toml") == {
        "epochs": 3, "fine-tune-epochs": 0, "augment": "none"
    }
    (tmp_path / "b.json").write_text('{"encoder": "minilm"}')
    assert TextTrainConfig.from_dict(read_config_file(tmp_path / "b.json")).encoder == "minilm"
    (tmp_path / "bad.toml").write_text("epochs = = 3\n")
    with pytest.raises(InputError, match=r"bad\.toml: not valid TOML"):
        read_config_file(tmp_path / "bad.toml")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(InputError, match=r"expected a table of settings"):
        read_config_file(tmp_path / "list.json")
    with pytest.raises(InputError, match=r"nope\.toml: no such config file"):
        read_config_file(tmp_path / "nope.toml")


def test_the_config_module_stands_on_the_ground_floor():
    """config.py is below every package: it imports nothing of transferkit but checks and errors
    (the import graph has no loop through it)."""
    tree = ast.parse((SRC / "config.py").read_text(encoding="utf-8"))
    imported = {
        node.module for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("transferkit")
    } | {
        alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
        for alias in node.names if alias.name.startswith("transferkit")
    }
    assert imported == {"transferkit.checks", "transferkit.errors"}
