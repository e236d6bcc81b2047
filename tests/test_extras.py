"""The one mechanism for optional and core dependencies: `transferkit.extras.PACKAGES` says the
pip line of each, and it must be the line pyproject.toml installs (a stale pin would tell a user
to install a version the project never tested)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from transferkit.errors import MissingDependencyError
from transferkit.extras import PACKAGES, require, require_installed

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())


@pytest.mark.parametrize("module", sorted(PACKAGES))
def test_each_pip_line_is_the_one_pyproject_installs(module):
    requirement, extra = PACKAGES[module]
    project = PYPROJECT["project"]
    listed = project["optional-dependencies"][extra] if extra else project["dependencies"]
    assert requirement in listed, (module, requirement, extra)


def test_a_missing_package_names_its_pip_line(monkeypatch):
    monkeypatch.setitem(PACKAGES, "no_such_module_here", ("no-such-package==1.0", "serve"))
    with pytest.raises(MissingDependencyError, match=r"Serving needs no-such-package, which is "
                                                     r"not installed\. Install it with: pip "
                                                     r"install 'transferkit\[serve\]' \(or: pip "
                                                     r"install 'no-such-package==1\.0'\)"):
        require("no_such_module_here", "Serving")
    with pytest.raises(MissingDependencyError, match="no-such-package"):
        require_installed("no_such_module_here", "Serving")


def test_a_model_file_with_kerashub_layers_and_no_kerashub_names_the_pip_line(monkeypatch,
                                                                              tmp_path):
    """KerasHub's three importers (sentence encoders, KerasHub backbones, model files that name
    its layers) share `require`'s one line, not three messages of their own."""
    import sys
    import zipfile

    from transferkit.training.io import load_model

    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", '{"module": "keras_hub.src.models.bert"}')
    monkeypatch.setitem(sys.modules, "keras_hub", None)  # import keras_hub fails
    with pytest.raises(MissingDependencyError,
                       match=r"model\.keras \(it holds KerasHub layers\) needs keras-hub, which is "
                             r"not installed\. Install it with: pip install 'keras-hub==0\.32\.\*' "
                             r"\(a dependency of transferkit\)"):
        load_model(path)
