"""The world of a user who installed transferkit without extras, inside a process that has them.

`make test` installs `[dev]`, which holds every extra, so a test that imports a module from an
extra by mistake passes here and fails for a user of the base install (the README's `make demo`
failed on `import jax` so, while every test was green). This module makes the base world in a
child process: `ExtrasBlocked` replaces Python's path finder on `sys.meta_path` with one that
does not find the modules of the distributions only the extras bring (`extra_only_modules`), as
if they were not installed: `import jax` raises `ModuleNotFoundError`, `importlib.util.find_spec`
answers `None` and `importlib.metadata` finds no distribution.

`start(root)` writes tiny data under `root` (faces, 320 small photos, a table of toy reviews, toy
word vectors, a tiny BERT folder) and the command lines of `steps` to `root/steps.json`, then
starts this file as a script in a child process, which hides the extras, runs each command line
with `transferkit.cli.main` in that one process (TensorFlow starts once) and writes what each
printed, its exit code and any traceback to `root/results.json`:

    python tests/base_world.py steps.json results.json

`tests/conftest.py` starts the child once when the test run begins (in pytest-xdist's
controller when the tests run in workers), so that it runs beside the other tests, and names its
folder in `TRANSFERKIT_TEST_BASE_WORLD`; `tests/test_base_install.py` waits for its results
(`results(root)`) in whichever process runs it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYPROJECT = HERE.parent / "pyproject.toml"


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _closure(requirements, extras_of=None) -> set[str]:
    """The installed distributions that `requirements` (PEP 508 strings) need, transitively."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [(Requirement(r), {""}) for r in requirements]
    while todo:
        requirement, extras = todo.pop()
        if requirement.marker is not None and not any(
                requirement.marker.evaluate({"extra": e}) for e in extras):
            continue
        name = _name(requirement.name)
        wanted = set(requirement.extras)
        key = f"{name}[{','.join(sorted(wanted))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            needs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        todo += [(Requirement(r), {""} | wanted) for r in needs]
    return {key.partition("[")[0] for key in seen}


def extra_only_modules() -> set[str]:
    """Top-level import names of the distributions that only transferkit's extras bring: what
    `pip install 'transferkit[dev]'` installs beyond `pip install transferkit` (the extras'
    dependency closure minus the base's, read from pyproject.toml and the installed metadata).

    Some packages named in an extra are not in this set because a base dependency needs them
    too: keras-hub 0.32 requires `tokenizers`, so every transferkit install has it."""
    import tomllib

    project = tomllib.loads(PYPROJECT.read_text())["project"]
    base = _closure(project["dependencies"])
    extras = _closure([r for group in project["optional-dependencies"].values() for r in group
                       if not r.startswith("transferkit")])
    only = extras - base
    modules = set()
    for module, distributions in importlib.metadata.packages_distributions().items():
        names = {_name(d) for d in distributions}
        if names & only and not names & base:
            modules.add(module)
    return modules


class ExtrasBlocked(importlib.abc.MetaPathFinder):
    """Python's `PathFinder`, blind to the top-level modules in `blocked` and their
    distributions' metadata. `install` puts it in `PathFinder`'s place on `sys.meta_path`."""

    def __init__(self, blocked):
        self.blocked = frozenset(blocked)
        self.asked: set[str] = set()  # blocked modules something tried to import

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in self.blocked:
            self.asked.add(top)
            return None
        return importlib.machinery.PathFinder.find_spec(name, path, target)

    def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
        for distribution in importlib.machinery.PathFinder.find_distributions(context):
            files = distribution.read_text("top_level.txt") or ""
            if not set(files.split()) & self.blocked:
                yield distribution

    def invalidate_caches(self):
        importlib.machinery.PathFinder.invalidate_caches()

    def install(self) -> "ExtrasBlocked":
        loaded = sorted(m for m in sys.modules if m.partition(".")[0] in self.blocked)
        if loaded:
            raise RuntimeError(f"already imported, cannot be hidden: {loaded}")
        index = sys.meta_path.index(importlib.machinery.PathFinder)
        sys.meta_path[index] = self
        importlib.invalidate_caches()
        return self


# -- the steps: what a user of the base install runs ------------------------------------------

def _photos(folder: Path, per_class: int) -> Path:
    """`2 * per_class` small PNGs in two class folders (enough for the ONNX Runtime path)."""
    import numpy as np
    from PIL import Image

    from helpers import photo

    for c, label in enumerate(("warm", "cool")):
        (folder / label).mkdir(parents=True)
        for i in range(per_class):
            pixels = photo(16, 16, seed=2 * i + c)
            if label == "cool":
                pixels = np.ascontiguousarray(pixels[..., ::-1])
            Image.fromarray(pixels).save(folder / label / f"{i:03d}.png")
    return folder


def steps(root: Path) -> list[dict]:
    """Writes the data under `root` and returns the command lines: `{"name", "argv"}`, and
    `"extra"` for the commands that need one (they must fail in one line naming it).

    An image model trained on 24 images (features on Keras: fewer than `runtimes.MIN_ITEMS`) and
    one on 256 training images (features on ONNX Runtime), a text model of each encoder kind
    (GloVe + BiLSTM, and a transformer fine-tuned); then each way of using them. The image models
    are on the tiny `test_cnn`: what is tested is the world, not the backbone; `check` and `rank`
    load the packaged EfficientNet-Lite0 weights (without torch), and CI's `make demo` trains on
    it in the base install."""
    from helpers import tiny_bert_folder, write_faces, write_table, write_vectors_file
    from transferkit.testing import TINY_BACKBONE

    faces = write_faces(root / "faces", per_class=12)
    many = _photos(root / "photos", per_class=160)  # 256 train + 64 validation
    table = write_table(root / "reviews.csv", bad_rows=False)
    vectors = write_vectors_file(root / "toy.vec.txt")
    bert = tiny_bert_folder(root / "bert", hidden=32, intermediate=64, layer_scale=0.1)
    out = root / "out"
    image, big = out / "image-run", out / "image-run-256"
    glove, tuned = out / "glove-run", out / "transformer-run"
    model, text_model = image / "model.keras", tuned / "model.keras"
    small = ["--backbone", TINY_BACKBONE, "--image-size", "32", "--augment", "none"]
    works = [
        ("train images (Keras features)", ["train", "images", faces, *small, "--epochs", "2",
                                           "--fine-tune-epochs", "1", "--unfreeze", "3",
                                           "--output", image, "--json"]),
        # `--runtime onnx` insists on ONNX Runtime: "auto" may keep Keras when one timed batch
        # on a busy CI machine says ONNX was not faster, which is not what this step asks.
        ("train images (ONNX features)", ["train", "images", many, *small, "--epochs", "2",
                                          "--fine-tune-epochs", "0", "--runtime", "onnx",
                                          "--output", big, "--json"]),
        ("train text glove-bilstm", ["train", "text", table, "--word-vectors", vectors,
                                     "--epochs", "2", "--fine-tune-epochs", "0",
                                     "--output", glove, "--json"]),
        ("train text transformer", ["train", "text", table, "--encoder", bert, "--epochs", "2",
                                    "--fine-tune-epochs", "1", "--output", tuned, "--json"]),
        ("predict image", ["predict", model, faces / "face" / "face_000.png", "--json"]),
        ("predict text", ["predict", text_model, "a great film", "--json"]),
        ("predict batch job", ["predict", model, faces, "--output", out / "predictions",
                               "--json"]),
        ("evaluate image", ["evaluate", model, faces, "--json"]),
        ("evaluate text", ["evaluate", glove / "model.keras", table, "--json"]),
        ("export saved_model", ["export", model, "--format", "saved_model",
                                "--output", out / "saved", "--json"]),
        ("export image onnx", ["export", model, "--format", "onnx", "--output", out / "onnx",
                               "--json"]),
        ("export text onnx", ["export", text_model, "--format", "onnx",
                              "--output", out / "text-onnx", "--json"]),
        ("embed", ["embed", model, faces, "--output", out / "embeddings", "--json"]),
        ("check", ["check", faces, "--json"]),
        ("rank", ["rank", faces, "--backbones", "efficientnet_lite0", "--per-class", "8",
                  "--json"]),
    ]
    needs = [
        ("serve", "serve", ["serve", model, "--port", "0"]),
        ("predict --ray", "scale", ["predict", model, faces, "--output", out / "ray", "--ray"]),
        ("train --distribute", "scale", ["train", "images", faces, *small, "--output",
                                         out / "distributed", "--distribute", "data-parallel"]),
        ("train --track", "tracking", ["train", "images", faces, *small, "--epochs", "1",
                                       "--output", out / "tracked", "--track"]),
        ("runs", "tracking", ["runs"]),
        ("models list", "tracking", ["models", "list"]),
        ("export litert", "export", ["export", model, "--format", "litert",
                                     "--output", out / "litert"]),
        ("export onnx float16", "export", ["export", model, "--format", "onnx", "--quantize",
                                           "float16", "--output", out / "onnx16"]),
        ("tune", "tune", ["tune", "images", faces, "--backbones", TINY_BACKBONE, "--output",
                          out / "tune"]),
    ]
    return ([{"name": name, "argv": [str(a) for a in argv]} for name, argv in works]
            + [{"name": name, "extra": extra, "argv": [str(a) for a in argv]}
               for name, extra, argv in needs])


ROOT_VARIABLE = "TRANSFERKIT_TEST_BASE_WORLD"


def start(root: Path) -> subprocess.Popen:
    """Writes the data and steps under `root` and starts the child that runs them; its stdout
    and stderr go to `root/child.log`, its results to `root/results.json`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "steps.json").write_text(json.dumps(steps(root), indent=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["TRANSFERKIT_CACHE_DIR"] = os.fspath(root / "cache")  # cold: features computed here
    env["PYTHONPATH"] = os.pathsep.join([os.fspath(HERE), env.get("PYTHONPATH", "")])
    with open(root / "child.log", "wb") as log:
        child = subprocess.Popen(
            [sys.executable, os.fspath(HERE / "base_world.py"), os.fspath(root / "steps.json"),
             os.fspath(root / "results.json")], cwd=root, env=env, stdout=log,
            stderr=subprocess.STDOUT,
            # Below the tests' priority: it takes what the workers leave idle (waiting on child
            # processes and servers), and the rest at the end (a full run: 7:02 so, 8:05 with the
            # child at their priority, on two cores).
            preexec_fn=lambda: os.nice(15))
    (root / "child.pid").write_text(str(child.pid))
    return child


def results(root: Path, timeout: float) -> dict:
    """What the child under `root` wrote, waiting up to `timeout` seconds for it to finish. From
    any process (the child may belong to another); raises `AssertionError` with the end of its
    log if it died without results or ran too long."""
    done, pid = root / "results.json", int((root / "child.pid").read_text())
    deadline = time.monotonic() + timeout
    while not done.is_file():
        if not _alive(pid) and not done.is_file():
            raise AssertionError(f"the base-world child died:\n{_log_tail(root)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"the base-world child ran over {timeout} s:\n{_log_tail(root)}")
        time.sleep(1)
    return json.loads(done.read_text())


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (not gone, not a zombie its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _log_tail(root: Path) -> str:
    return (root / "child.log").read_text(errors="replace")[-3000:]


def run_steps(todo: list[dict]) -> list[dict]:
    """Runs each `{"name", "argv"}` with `transferkit.cli.main`; records exit code, stdout,
    stderr, seconds and the traceback of anything the command line let through."""
    from transferkit.cli import main

    results = []
    for step in todo:
        out, err = io.StringIO(), io.StringIO()
        started = time.perf_counter()
        code, trace = None, None
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in step["argv"]])
            except SystemExit as exc:  # argparse
                code = exc.code
            except BaseException:  # noqa: BLE001 (a traceback is what the test looks for)
                trace = traceback.format_exc()
        results.append({"name": step["name"], "code": code, "stdout": out.getvalue(),
                        "stderr": err.getvalue(), "traceback": trace,
                        "seconds": round(time.perf_counter() - started, 1)})
    return results


def import_every_module() -> dict[str, str]:
    """Imports every module of transferkit; returns `{module: outcome}`, where the outcome is
    `"ok"`, `"needs an extra: <message>"` (a `MissingDependencyError`, which names the pip
    line) or the traceback of anything else (an extra imported at the top of a module that
    the base install reaches)."""
    import pkgutil

    import transferkit
    from transferkit.errors import MissingDependencyError

    outcomes = {}
    for module in pkgutil.walk_packages(transferkit.__path__, "transferkit."):
        try:
            importlib.import_module(module.name)
            outcomes[module.name] = "ok"
        except MissingDependencyError as exc:
            outcomes[module.name] = f"needs an extra: {exc}"
        except BaseException:  # noqa: BLE001 (the traceback is the finding)
            outcomes[module.name] = traceback.format_exc()
    return outcomes


def main(argv: list[str]) -> int:
    steps_file, results_file = argv
    blocker = ExtrasBlocked(extra_only_modules()).install()
    results = run_steps(json.loads(Path(steps_file).read_text()))
    modules = import_every_module()
    from transferkit.files import atomic_write

    with atomic_write(results_file, "w") as handle:  # whole or absent for another process
        json.dump({
            "blocked": sorted(blocker.blocked), "asked": sorted(blocker.asked),
            "loaded": sorted(m for m in sys.modules if m.partition(".")[0] in blocker.blocked),
            "results": results, "modules": modules,
        }, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
