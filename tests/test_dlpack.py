"""DLPack export: columns reach torch and JAX as views of the mapped file, outlive their frame,
carry the right ABI and flags, and never let a tensor write reach the file."""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import relay_ml as relay
from conftest import address_in_file_mapping, rss_anon_bytes, write_arrow

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

N = 1000

NUMERIC = {
    "f32": (np.float32, torch.float32),
    "f64": (np.float64, torch.float64),
    "f16": (np.float16, torch.float16),
    "i8": (np.int8, torch.int8),
    "i16": (np.int16, torch.int16),
    "i32": (np.int32, torch.int32),
    "i64": (np.int64, torch.int64),
    "u8": (np.uint8, torch.uint8),
}


def _values(dtype: type, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(7)
    if np.issubdtype(dtype, np.floating):
        return rng.standard_normal(n).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)


@pytest.fixture
def typed_file(tmp_path: Path) -> tuple[Path, pa.Table]:
    columns = {name: pa.array(_values(np_dtype)) for name, (np_dtype, _) in NUMERIC.items()}
    columns["flag"] = pa.array(np.arange(N) % 3 == 0)
    columns["emb"] = pa.FixedSizeListArray.from_arrays(pa.array(_values(np.float32, N * 4)), 4)
    columns["ts"] = pa.array(np.arange(N, dtype=np.int64) * 1_000_003, type=pa.timestamp("us"))
    columns["name"] = pa.array([f"row{i}" for i in range(N)])
    table = pa.table(columns)
    return write_arrow(tmp_path / "typed.arrow", table), table


def _expected(table: pa.Table, name: str) -> np.ndarray:
    column = table[name]
    if pa.types.is_fixed_size_list(column.type):
        return np.stack(column.to_numpy(zero_copy_only=False))
    return column.to_numpy(zero_copy_only=False)


# -- values and zero copy ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(NUMERIC))
def test_torch_gets_a_view_of_the_mapping(typed_file, name):
    path, table = typed_file
    column = relay.scan(path)[name]
    assert column.is_zero_copy
    expected = _expected(table, name)
    for tensor in (torch.from_dlpack(column), column.to_tensor()):
        assert tensor.dtype == NUMERIC[name][1] and tuple(tensor.shape) == (N,)
        np.testing.assert_array_equal(tensor.numpy(), expected)
        assert tensor.data_ptr() == np.asarray(column).ctypes.data
        assert address_in_file_mapping(tensor.data_ptr(), path)


def test_fixed_size_list_is_a_2d_view(typed_file):
    path, table = typed_file
    column = relay.scan(path)["emb"]
    tensor = column.to_tensor()
    assert tuple(tensor.shape) == (N, 4) and tensor.stride() == (4, 1) and tensor.is_contiguous()
    np.testing.assert_array_equal(tensor.numpy(), _expected(table, "emb"))
    assert address_in_file_mapping(tensor.data_ptr(), path)
    array = column.to_jax()
    assert array.shape == (N, 4) and array.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(array), _expected(table, "emb"))


def test_bool_goes_out_as_dlpack_bool(typed_file):
    # Arrow booleans are bits: the export is a byte copy, but the dtype is kDLBool.
    path, table = typed_file
    column = relay.scan(path)["flag"]
    tensor = torch.from_dlpack(column)
    assert tensor.dtype == torch.bool
    np.testing.assert_array_equal(tensor.numpy(), _expected(table, "flag"))
    array = jnp.from_dlpack(column)
    assert array.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(array), _expected(table, "flag"))


def test_timestamps_go_out_as_int64_ticks(typed_file):
    path, table = typed_file
    tensor = relay.scan(path)["ts"].to_tensor()
    assert tensor.dtype == torch.int64
    np.testing.assert_array_equal(tensor.numpy(), table["ts"].cast(pa.int64()).to_numpy())
    assert address_in_file_mapping(tensor.data_ptr(), path)


@pytest.mark.parametrize("name", ["f32", "f16", "i8", "i16", "i32", "u8", "emb"])
def test_jax_values(typed_file, name):
    path, table = typed_file
    column = relay.scan(path)[name]
    for array in (jnp.from_dlpack(column), column.to_jax()):
        np.testing.assert_array_equal(np.asarray(array), _expected(table, name))


def _write_64_byte_aligned(tmp_path: Path, values: np.ndarray) -> tuple[Path, str]:
    """A pyarrow file whose single column's buffer lands on a 64-byte boundary (pyarrow aligns
    to 8; a longer column name shifts the body by 8 bytes at a time). The mapping starts on a
    page, so the address is aligned exactly when the file offset is."""
    for pad in range(64):
        name = "x" + "_" * pad
        path = write_arrow(tmp_path / f"aligned{pad}.arrow", pa.table({name: values}))
        if np.asarray(relay.scan(path)[name]).ctypes.data % 64 == 0:
            return path, name
    pytest.fail("no column name gave a 64-byte-aligned buffer")


def test_jax_gets_a_view_of_an_aligned_mapping(tmp_path):
    values = _values(np.float32)
    path, name = _write_64_byte_aligned(tmp_path, values)
    column = relay.scan(path)[name]
    address = np.asarray(column).ctypes.data
    assert address % 64 == 0 and address_in_file_mapping(address, path)
    for array in (jnp.from_dlpack(column), column.to_jax()):
        np.testing.assert_array_equal(np.asarray(array), values)
        assert array.unsafe_buffer_pointer() == address


# -- lifetime ------------------------------------------------------------------------------


def test_tensor_outlives_column_and_frame(typed_file):
    path, table = typed_file
    frame = relay.scan(path)
    column = frame["f64"]
    tensor = column.to_tensor()
    copied = frame["flag"].to_tensor()
    array = frame["emb"].to_jax()
    del column, frame
    gc.collect()
    assert address_in_file_mapping(tensor.data_ptr(), path)
    np.testing.assert_array_equal(tensor.numpy(), _expected(table, "f64"))
    np.testing.assert_array_equal(copied.numpy(), _expected(table, "flag"))
    np.testing.assert_array_equal(np.asarray(array), _expected(table, "emb"))


def test_unconsumed_capsule_keeps_the_data_and_frees_cleanly(typed_file):
    path, table = typed_file
    frame = relay.scan(path)
    capsule = frame["i32"].__dlpack__(max_version=(1, 0))
    dropped = frame["i32"].__dlpack__()  # never consumed: its deleter runs with the capsule
    del frame, dropped
    gc.collect()
    np.testing.assert_array_equal(torch.from_dlpack(capsule).numpy(), _expected(table, "i32"))


# -- writes never reach the file -----------------------------------------------------------


def test_inplace_write_does_not_change_the_file(typed_file):
    path, table = typed_file
    file_bytes = path.read_bytes()
    column = relay.scan(path)["f32"]
    tensor = column.to_tensor()
    assert address_in_file_mapping(tensor.data_ptr(), path)
    tensor.add_(1)
    np.testing.assert_array_equal(tensor.numpy(), _expected(table, "f32") + np.float32(1))
    assert path.read_bytes() == file_bytes
    with pa.ipc.open_file(path) as reader:
        assert reader.read_all().equals(table)
    np.testing.assert_array_equal(np.asarray(relay.scan(path)["f32"]), _expected(table, "f32"))


def test_copy_true_gives_a_private_writable_copy(typed_file):
    path, table = typed_file
    column = relay.scan(path)["i64"]
    tensor = torch.from_dlpack(column, copy=True)
    assert not address_in_file_mapping(tensor.data_ptr(), path)
    np.testing.assert_array_equal(tensor.numpy(), _expected(table, "i64"))
    tensor.zero_()
    np.testing.assert_array_equal(np.asarray(column), _expected(table, "i64"))
    array = jnp.from_dlpack(relay.scan(path)["f32"], copy=True)
    np.testing.assert_array_equal(np.asarray(array), _expected(table, "f32"))


# -- copies: nulls, several record batches ------------------------------------------------


@pytest.fixture
def copy_file(tmp_path: Path) -> tuple[Path, pa.Table]:
    table = pa.table(
        {
            "with_nulls": pa.array([1.5, None, 3.25, None] * 250, type=pa.float32()),
            "int_nulls": pa.array([1, None, 3, 4] * 250, type=pa.int32()),
            "plain": pa.array(np.arange(N, dtype=np.float64)),
        }
    )
    return write_arrow(tmp_path / "copies.arrow", table, batch_rows=300), table


@pytest.mark.parametrize("name", ["with_nulls", "int_nulls", "plain"])
def test_columns_that_need_a_copy_export_one(copy_file, name):
    path, table = copy_file
    column = relay.scan(path)[name]
    assert column.copy_reason is not None
    expected = _expected(table, name)
    for tensor in (torch.from_dlpack(column), column.to_tensor()):
        np.testing.assert_array_equal(tensor.numpy(), expected)
        assert not address_in_file_mapping(tensor.data_ptr(), path)
    if expected.dtype == np.float32:  # JAX's default 32-bit mode would narrow float64
        np.testing.assert_array_equal(np.asarray(column.to_jax()), expected)


@pytest.mark.parametrize("name", ["with_nulls", "plain"])
def test_copy_false_refuses_a_copy(copy_file, name):
    path, _ = copy_file
    column = relay.scan(path)[name]
    with pytest.raises(relay.ZeroCopyError, match=r"record batches|null"):
        column.__dlpack__(copy=False)
    with pytest.raises(BufferError):
        column.__dlpack__(max_version=(1, 0), copy=False)
    with pytest.raises(BufferError):
        torch.from_dlpack(column, copy=False)


def test_copy_false_on_a_view_is_fine(typed_file):
    path, table = typed_file
    column = relay.scan(path)["f64"]
    tensor = torch.from_dlpack(column, copy=False)
    assert address_in_file_mapping(tensor.data_ptr(), path)
    np.testing.assert_array_equal(tensor.numpy(), _expected(table, "f64"))


# -- device, types ------------------------------------------------------------------------


def test_device_is_the_host(typed_file):
    path, table = typed_file
    column = relay.scan(path)["f32"]
    assert column.__dlpack_device__() == (1, 0)
    tensor = torch.from_dlpack(column, device="cpu")
    assert tensor.device.type == "cpu"
    np.testing.assert_array_equal(tensor.numpy(), _expected(table, "f32"))
    assert torch.from_dlpack(column.__dlpack__(dl_device=(1, 0))).data_ptr() == tensor.data_ptr()


@pytest.mark.parametrize("device", [(2, 0), (1, 1), (13, 0)])
def test_other_devices_are_refused(typed_file, device):
    path, _ = typed_file
    column = relay.scan(path)["f32"]
    with pytest.raises(BufferError, match="host memory"):
        column.__dlpack__(dl_device=device)
    with pytest.raises(BufferError, match="host memory"):
        column.__dlpack__(max_version=(1, 0), dl_device=device, copy=True)


def test_string_column_has_no_dlpack_form(typed_file):
    path, _ = typed_file
    column = relay.scan(path)["name"]
    with pytest.raises(relay.RelayTypeError, match="fixed-width"):
        column.__dlpack__()
    with pytest.raises(relay.RelayError):
        torch.from_dlpack(column)


# -- the capsule itself: ABI, flags, layout -----------------------------------------------


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device_type", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("code", ctypes.c_uint8),
        ("bits", ctypes.c_uint8),
        ("lanes", ctypes.c_uint16),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _ManagedVersioned(ctypes.Structure):
    _fields_ = [
        ("major", ctypes.c_uint32),
        ("minor", ctypes.c_uint32),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
        ("flags", ctypes.c_uint64),
        ("dl_tensor", _DLTensor),
    ]


class _ManagedLegacy(ctypes.Structure):
    _fields_ = [
        ("dl_tensor", _DLTensor),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


READ_ONLY, IS_COPIED = 1, 2


def _capsule_name(capsule: object) -> str:
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype, get_name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    return get_name(capsule).decode()


def _open_capsule(capsule: object, struct: type[ctypes.Structure]) -> ctypes.Structure:
    get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
    get_pointer.restype, get_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return struct.from_address(get_pointer(capsule, _capsule_name(capsule).encode()))


def test_versioned_abi_is_read_only_with_explicit_strides(typed_file):
    path, _ = typed_file
    column = relay.scan(path)["emb"]
    capsule = column.__dlpack__(max_version=(1, 0))
    assert _capsule_name(capsule) == "dltensor_versioned"
    managed = _open_capsule(capsule, _ManagedVersioned)
    assert managed.major == 1 and managed.flags == READ_ONLY
    tensor = managed.dl_tensor
    assert (tensor.device_type, tensor.device_id, tensor.ndim) == (1, 0, 2)
    assert (tensor.code, tensor.bits, tensor.lanes) == (2, 32, 1)  # kDLFloat, 32 bits
    assert [tensor.shape[i] for i in range(2)] == [N, 4]
    assert [tensor.strides[i] for i in range(2)] == [4, 1]
    assert tensor.data == np.asarray(column).ctypes.data and tensor.byte_offset == 0


def test_legacy_abi_without_max_version(typed_file):
    path, _ = typed_file
    column = relay.scan(path)["flag"]
    for capsule in (column.__dlpack__(), column.__dlpack__(max_version=(0, 8))):
        assert _capsule_name(capsule) == "dltensor"
        tensor = _open_capsule(capsule, _ManagedLegacy).dl_tensor
        assert (tensor.code, tensor.bits, tensor.lanes) == (6, 8, 1)  # kDLBool, 8 bits
        assert tensor.ndim == 1 and tensor.shape[0] == N and tensor.strides[0] == 1


def test_copy_true_marks_is_copied(typed_file):
    path, _ = typed_file
    column = relay.scan(path)["i16"]
    managed = _open_capsule(column.__dlpack__(max_version=(1, 0), copy=True), _ManagedVersioned)
    assert managed.flags == IS_COPIED
    assert not address_in_file_mapping(managed.dl_tensor.data, path)
    legacy = _open_capsule(column.__dlpack__(copy=True), _ManagedLegacy)
    assert not address_in_file_mapping(legacy.dl_tensor.data, path)


def test_empty_column(tmp_path):
    path = write_arrow(tmp_path / "empty.arrow", pa.table({"x": pa.array([], type=pa.float32())}))
    column = relay.scan(path)["x"]
    assert tuple(column.to_tensor().shape) == (0,)
    assert column.to_jax().shape == (0,)


# -- memory --------------------------------------------------------------------------------


def test_large_export_does_not_grow_anonymous_memory(tmp_path):
    rows = 64 * 1024 * 1024  # 256 MB of float32
    values = np.arange(rows, dtype=np.float32)
    expected_total, expected_last = values.sum(dtype=np.float64), float(values[-1])
    path = write_arrow(tmp_path / "large.arrow", pa.table({"x": values}))
    del values
    gc.collect()
    column = relay.scan(path)["x"]
    before = rss_anon_bytes()
    tensor = column.to_tensor()
    assert address_in_file_mapping(tensor.data_ptr(), path)
    assert float(tensor[-1]) == expected_last
    total = float(tensor.sum(dtype=torch.float64))  # reads every page of the mapping
    grown = rss_anon_bytes() - before
    assert total == pytest.approx(expected_total, rel=1e-9)
    assert grown < 8 * 1024 * 1024, f"RssAnon grew by {grown / 2**20:.1f} MiB"


def test_a_dictionary_of_strings_points_to_its_codes(tmp_path: Path) -> None:
    import torch

    city = pa.array(["Lima", "Oslo", "Lima", "Pune"]).dictionary_encode()
    frame = relay.scan(write_arrow(tmp_path / "d.arrow", pa.table({"city": city})))
    for export in (lambda c: c.to_tensor(), lambda c: torch.from_dlpack(c)):
        with pytest.raises(relay.RelayTypeError, match=r"\.codes\(\) gives") as info:
            export(frame["city"])
        assert "dictionary<values=string" in str(info.value) and '"city"' in str(info.value)
    assert frame["city"].codes().tolist() == city.indices.to_pylist()
