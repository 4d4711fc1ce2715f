//! Bindings of the batch engine (`relay_exec::feed`): a reader over a frame's columns, a
//! synchronous `gather` (map-style datasets) and a prefetching `stream` (iterable datasets and
//! loaders). This file converts NumPy buffers and arguments; the engine decides the rest.

use std::sync::{Arc, Mutex};

use numpy::npyffi::flags::NPY_ARRAY_WRITEABLE;
use numpy::{
    PyArray1, PyArrayDescr, PyArrayDescrMethods, PyReadonlyArray1, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use relay_exec::{
    BatchPlan, BatchStream, ColumnShape, ExecError, Output, OutputMemory, RaggedDense, StreamSpec,
    epoch_order, outputs_of,
};
use relay_plan::Expr;

use crate::convert;
use crate::errors::{DetachGuarded, ErrorKind, relay_error};
use crate::export::numpy::dense_to_numpy_writable;
use crate::frame::{NativeFrame, exec_error, optimized};

/// The same as NumPy arrays.
type RaggedArrays<'py> = Vec<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>>;
/// The buffers a batch was submitted with, kept alive until it is returned.
type Keep = Vec<Option<Py<PyAny>>>;

/// An output as Python describes it: (column positions in the reader, NumPy dtype string,
/// fill value for nulls).
type OutputSpec = (Vec<usize>, String, Option<f64>);

fn parse_outputs(plan: &BatchPlan, specs: Vec<OutputSpec>) -> PyResult<Vec<Output>> {
    let specs = specs
        .into_iter()
        .map(|(columns, dtype, fill_null)| Ok((columns, convert::dense_dtype(&dtype)?, fill_null)))
        .collect::<PyResult<Vec<_>>>()?;
    outputs_of(plan.columns(), specs).map_err(|e| relay_error(ErrorKind::Type, e))
}

/// A writable, C-contiguous NumPy array's memory, checked to hold `rows` rows of `width` cells
/// of `expected`.
fn output_memory(
    array: &Bound<'_, PyAny>,
    rows: usize,
    width: usize,
    expected: &Bound<'_, PyArrayDescr>,
) -> PyResult<OutputMemory> {
    let bad = |what: String| relay_error(ErrorKind::Value, format!("batch output buffer: {what}"));
    let array = array
        .cast::<PyUntypedArray>()
        .map_err(|_| bad("expected a NumPy array".into()))?;
    // An equivalence check in C: reading the dtype's `str` here cost most of a submit.
    if !array.dtype().is_equiv_to(expected) {
        return Err(bad(format!(
            "dtype {}, expected {}",
            array.dtype(),
            expected
        )));
    }
    // SAFETY: `as_array_ptr` is the live `PyArrayObject` behind `array` (the cast checked its
    // type); reading its flags and data pointer is a plain field read.
    let (flags, data) = unsafe {
        let object = &*array.as_array_ptr();
        (object.fields.flags, object.fields.data)
    };
    if !array.is_c_contiguous() || flags & NPY_ARRAY_WRITEABLE == 0 {
        return Err(bad("must be writable and C-contiguous".into()));
    }
    let len = array.shape().iter().product::<usize>() * array.dtype().itemsize();
    let needed = rows * width * expected.itemsize();
    if len < needed {
        return Err(bad(format!(
            "holds {len} bytes, {needed} needed for {rows} rows of {width} cells"
        )));
    }
    // SAFETY: `data .. data + len` is the writable, contiguous memory of `array`; the caller
    // keeps `array` alive with the job (`Keep`) or for the duration of the gather, and the
    // Python side hands each buffer to one gather at a time.
    Ok(unsafe { OutputMemory::new(data.cast(), len) })
}

/// Positions as row numbers, refusing negative ones.
fn positions_of(positions: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<u64>> {
    let slice = positions
        .as_slice()
        .map_err(|_| relay_error(ErrorKind::Value, "indices must be contiguous"))?;
    slice
        .iter()
        .map(|&p| {
            u64::try_from(p)
                .map_err(|_| relay_error(ErrorKind::Value, format!("index {p} is negative")))
        })
        .collect()
}

fn ragged_to_python<'py>(py: Python<'py>, ragged: RaggedDense) -> PyResult<RaggedArrays<'py>> {
    ragged
        .into_iter()
        .map(|pair| {
            pair.map(|(padded, lengths)| {
                Ok((
                    dense_to_numpy_writable(py, padded)?,
                    dense_to_numpy_writable(py, lengths)?,
                ))
            })
            .transpose()
        })
        .collect()
}

/// The NumPy dtype of each output's buffer.
fn output_descrs<'py>(
    py: Python<'py>,
    outputs: &[Output],
) -> PyResult<Vec<Bound<'py, PyArrayDescr>>> {
    outputs
        .iter()
        .map(|output| PyArrayDescr::new(py, output.dtype().numpy_str().as_str()))
        .collect()
}

fn checked_memories(
    outputs: &[Output],
    descrs: &[Bound<'_, PyArrayDescr>],
    buffers: &[Option<Bound<'_, PyAny>>],
    rows: usize,
) -> PyResult<Vec<Option<OutputMemory>>> {
    if buffers.len() != outputs.len() {
        return Err(relay_error(
            ErrorKind::Value,
            format!(
                "{} buffers given for {} outputs",
                buffers.len(),
                outputs.len()
            ),
        ));
    }
    outputs
        .iter()
        .zip(descrs)
        .zip(buffers)
        .map(|((output, descr), buffer)| match (output, buffer) {
            (Output::Fixed { width, .. }, Some(buffer)) => {
                output_memory(buffer, rows, *width, descr).map(Some)
            }
            (Output::Fixed { .. }, None) => Err(relay_error(
                ErrorKind::Value,
                "a buffer is needed for every fixed-width output",
            )),
            (Output::Ragged { .. }, _) => Ok(None),
        })
        .collect()
}

#[pyclass(frozen, module = "relay_ml._relay")]
pub struct NativeBatchReader {
    plan: Arc<BatchPlan>,
}

#[pymethods]
impl NativeBatchReader {
    /// Prepares `columns` of `frame` for batches: executes the plan once, or, over decoded
    /// files, prepares it to run piece by piece (`cache_bytes` bounds the decoded pieces kept
    /// for map-style access).
    #[new]
    #[pyo3(signature = (frame, columns, cache_bytes))]
    fn new(
        py: Python<'_>,
        frame: PyRef<'_, NativeFrame>,
        columns: Vec<String>,
        cache_bytes: u64,
    ) -> PyResult<Self> {
        let projected = frame
            .plan
            .project(columns.iter().map(Expr::col).collect())
            .map_err(crate::frame::plan_error)?;
        let plan = py
            .detach_guarded("building a batch reader", || {
                BatchPlan::new(&optimized(Arc::new(projected))?, cache_bytes)
            })?
            .map_err(exec_error)?;
        Ok(Self {
            plan: Arc::new(plan),
        })
    }

    /// Rows, when known without reading: None for a filtered (or CSV / NDJSON) source that is
    /// read piece by piece.
    #[getter]
    fn known_num_rows(&self) -> Option<u64> {
        self.plan.known_num_rows()
    }

    /// Rows, decoding every piece once to count them where the files do not say.
    fn count_rows(&self, py: Python<'_>) -> PyResult<u64> {
        let plan = self.plan.clone();
        py.detach_guarded("count_rows", move || plan.num_rows())?
            .map_err(exec_error)
    }

    /// Rows shard `shard` of `shards` reads in an epoch, when known before reading.
    #[pyo3(signature = (shuffle, seed, epoch, block_rows, buffer_rows, shard, shards))]
    #[allow(clippy::too_many_arguments)]
    fn shard_rows(
        &self,
        shuffle: &str,
        seed: u64,
        epoch: u64,
        block_rows: u64,
        buffer_rows: u64,
        shard: u64,
        shards: u64,
    ) -> PyResult<Option<u64>> {
        let shuffle = convert::shuffle(shuffle, block_rows, buffer_rows)?;
        Ok(self.plan.shard_rows(shuffle, seed, epoch, shard, shards))
    }

    /// Whether the rows are read piece by piece (decoded files) rather than by position.
    #[getter]
    fn streamed(&self) -> bool {
        self.plan.is_streamed()
    }

    /// (hits, misses, bytes held, budget) of the decoded-piece cache, or None.
    fn cache_stats(&self) -> Option<(u64, u64, u64, u64)> {
        self.plan
            .cache_stats()
            .map(|s| (s.hits, s.misses, s.bytes, s.budget))
    }

    /// (name, natural NumPy dtype string, cells per row or None for ragged) per column.
    fn column_info(&self) -> Vec<(String, String, Option<usize>)> {
        self.plan
            .columns()
            .columns()
            .iter()
            .map(|c| {
                let width = match c.shape {
                    ColumnShape::Fixed(w) => Some(w),
                    ColumnShape::Ragged => None,
                };
                (c.name.clone(), c.dtype.numpy_str(), width)
            })
            .collect()
    }

    /// Gathers the rows at `positions` into `buffers` (one per fixed output, None for ragged
    /// ones) with the GIL released; returns (padded, lengths) for each ragged output.
    fn gather<'py>(
        &self,
        py: Python<'py>,
        outputs: Vec<OutputSpec>,
        positions: PyReadonlyArray1<'_, i64>,
        buffers: Vec<Option<Bound<'py, PyAny>>>,
    ) -> PyResult<RaggedArrays<'py>> {
        let outputs = parse_outputs(&self.plan, outputs)?;
        let positions = positions_of(&positions)?;
        let memories = checked_memories(
            &outputs,
            &output_descrs(py, &outputs)?,
            &buffers,
            positions.len(),
        )?;
        let plan = self.plan.clone();
        let ragged = py
            .detach_guarded("gather", move || {
                plan.gather(&outputs, &positions, &memories)
            })?
            .map_err(batch_error)?;
        ragged_to_python(py, ragged)
    }

    /// A prefetching stream over one shard of one epoch (see `NativeBatchStream`).
    #[pyo3(signature = (outputs, *, shuffle, seed, epoch, block_rows, buffer_rows, shard, shards, batch_size, drop_last, start_batch, row_shapes=None, depth=0))]
    #[allow(clippy::too_many_arguments)]
    fn stream(
        &self,
        py: Python<'_>,
        outputs: Vec<OutputSpec>,
        shuffle: &str,
        seed: u64,
        epoch: u64,
        block_rows: u64,
        buffer_rows: u64,
        shard: u64,
        shards: u64,
        batch_size: u64,
        drop_last: bool,
        start_batch: u64,
        row_shapes: Option<Vec<Option<Vec<usize>>>>,
        depth: usize,
    ) -> PyResult<NativeBatchStream> {
        let outputs = parse_outputs(&self.plan, outputs)?;
        let spec = StreamSpec {
            shuffle: convert::shuffle(shuffle, block_rows, buffer_rows)?,
            seed,
            epoch,
            shard,
            shards,
            batch_size,
            drop_last,
            start_batch,
        };
        let descrs = output_descrs(py, &outputs)?
            .into_iter()
            .map(Bound::unbind)
            .collect();
        let plan = self.plan.clone();
        let fixed_outputs = outputs.clone();
        let stream = py
            .detach_guarded("stream", move || plan.stream::<Keep>(outputs, spec))?
            .map_err(|e| relay_error(ErrorKind::Value, e))?;
        if let Some(shapes) = &row_shapes
            && shapes.len() != fixed_outputs.len()
        {
            return Err(relay_error(
                ErrorKind::Value,
                format!(
                    "{} row shapes given for {} outputs",
                    shapes.len(),
                    fixed_outputs.len()
                ),
            ));
        }
        Ok(NativeBatchStream {
            outputs: fixed_outputs,
            descrs,
            batch_size: batch_size as usize,
            row_shapes,
            depth,
            stream: Mutex::new(stream),
        })
    }
}

/// Batches of one shard of one epoch, gathered ahead by producer threads into buffers the
/// caller submits, and returned in order. Dropping or closing it stops the producers.
#[pyclass(module = "relay_ml._relay")]
pub struct NativeBatchStream {
    outputs: Vec<Output>,
    descrs: Vec<Py<PyArrayDescr>>,
    batch_size: usize,
    /// Set when the stream allocates its own NumPy buffers: each fixed output's per-row shape
    /// (None for ragged outputs). The caller then never submits; `next` keeps `depth` batches
    /// in flight itself, which saves a call and a Python allocation per batch.
    row_shapes: Option<Vec<Option<Vec<usize>>>>,
    depth: usize,
    /// In a mutex only because a pyclass must be Sync; the stream is used from one thread.
    stream: Mutex<BatchStream<Keep>>,
}

impl NativeBatchStream {
    fn stream(&self) -> std::sync::MutexGuard<'_, BatchStream<Keep>> {
        self.stream
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Allocates and submits buffer sets until `depth` batches are in flight (streams that
    /// allocate their own buffers only).
    fn fill_ahead(&self, py: Python<'_>, stream: &mut BatchStream<Keep>) -> PyResult<()> {
        let Some(shapes) = &self.row_shapes else {
            return Ok(());
        };
        // A stream without producer threads fills each batch when asked: one set suffices.
        let depth = if stream.producers() == 0 {
            1
        } else {
            self.depth as u64
        };
        while stream.in_flight() < depth && stream.wants_buffers() {
            let mut memories = Vec::with_capacity(shapes.len());
            let mut keep = Vec::with_capacity(shapes.len());
            for (shape, descr) in shapes.iter().zip(&self.descrs) {
                let Some(shape) = shape else {
                    memories.push(None);
                    keep.push(None);
                    continue;
                };
                let dims: Vec<usize> = std::iter::once(self.batch_size)
                    .chain(shape.iter().copied())
                    .collect();
                let array = empty_array(py, descr.bind(py), &dims)?;
                let len = dims.iter().product::<usize>() * descr.bind(py).itemsize();
                // SAFETY: a fresh C-contiguous array of `len` bytes that nobody else has seen;
                // `keep` holds it until the batch is returned.
                let data = unsafe {
                    (*array.cast::<PyUntypedArray>()?.as_array_ptr())
                        .fields
                        .data
                };
                // SAFETY: as above: the array's own memory, alive while `keep` holds it.
                memories.push(Some(unsafe { OutputMemory::new(data.cast(), len) }));
                keep.push(Some(array.unbind()));
            }
            stream
                .submit(memories, keep)
                .map_err(|e| relay_error(ErrorKind::Value, e))?;
        }
        Ok(())
    }
}

/// An uninitialized C-contiguous NumPy array of `descr` and shape `dims`.
fn empty_array<'py>(
    py: Python<'py>,
    descr: &Bound<'py, PyArrayDescr>,
    dims: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let mut dims: Vec<numpy::npyffi::npy_intp> =
        dims.iter().map(|&d| d as numpy::npyffi::npy_intp).collect();
    // SAFETY: `dims` has `dims.len()` entries and is copied by NumPy; PyArray_Empty steals the
    // dtype reference that `into_dtype_ptr` hands over and returns a new reference (or NULL
    // with an exception set, which `from_owned_ptr_or_err` turns into an error).
    unsafe {
        let array = numpy::PY_ARRAY_API.PyArray_Empty(
            py,
            dims.len() as std::ffi::c_int,
            dims.as_mut_ptr(),
            descr.clone().into_dtype_ptr(),
            0,
        );
        Bound::from_owned_ptr_or_err(py, array)
    }
}

#[pymethods]
impl NativeBatchStream {
    /// Batches in the shard for the epoch (including those skipped by `start_batch`); None
    /// when only reading tells (a filtered source read piece by piece).
    #[getter]
    fn num_batches(&self) -> Option<u64> {
        self.stream().num_batches()
    }

    /// Threads gathering batches at once.
    #[getter]
    fn producers(&self) -> usize {
        self.stream().producers()
    }

    /// Hands one set of buffers (one per fixed output, `batch_size` rows each; None for
    /// ragged outputs) to the producers, for the next batch not yet given buffers.
    fn submit(&self, py: Python<'_>, buffers: Vec<Option<Bound<'_, PyAny>>>) -> PyResult<()> {
        let descrs: Vec<Bound<'_, PyArrayDescr>> =
            self.descrs.iter().map(|d| d.bind(py).clone()).collect();
        let memories = checked_memories(&self.outputs, &descrs, &buffers, self.batch_size)?;
        let keep = buffers.into_iter().map(|b| b.map(Bound::unbind)).collect();
        self.stream()
            .submit(memories, keep)
            .map_err(|e| relay_error(ErrorKind::Value, e))
    }

    /// The next batch, waiting with the GIL released: (rows, buffers, ragged outputs), or None
    /// at the end of the shard.
    #[allow(clippy::type_complexity)]
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Option<(usize, Keep, RaggedArrays<'py>)>> {
        let mut guard = self.stream();
        self.fill_ahead(py, &mut guard)?;
        let stream: &mut BatchStream<Keep> = &mut guard;
        let filled = py
            .detach_guarded("reading the next batch", move || stream.next_batch())?
            .map_err(batch_error)?;
        // The producers fill the next batches while the caller uses this one.
        if filled.is_some() {
            self.fill_ahead(py, &mut guard)?;
        }
        drop(guard);
        filled
            .map(|f| Ok((f.rows, f.keep, ragged_to_python(py, f.ragged)?)))
            .transpose()
    }

    /// Stops the producers (after the batches they are gathering) and waits for them.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let mut guard = self.stream();
        let stream: &mut BatchStream<Keep> = &mut guard;
        py.detach_guarded("close", move || stream.close())
    }
}

/// The visiting order of an epoch as a NumPy array (for samplers, tests and inspection).
#[pyfunction]
#[pyo3(signature = (num_rows, shuffle, seed, epoch, block_rows, buffer_rows))]
pub fn epoch_positions<'py>(
    py: Python<'py>,
    num_rows: u64,
    shuffle: &str,
    seed: u64,
    epoch: u64,
    block_rows: u64,
    buffer_rows: u64,
) -> PyResult<Bound<'py, PyArray1<u64>>> {
    let shuffle = convert::shuffle(shuffle, block_rows, buffer_rows)?;
    let positions = py
        .detach_guarded("epoch_positions", || {
            let order = epoch_order(num_rows, shuffle, seed, epoch)?;
            let mut positions = Vec::with_capacity(order.len() as usize);
            order.extend_into(0..order.len(), &mut positions);
            Ok::<_, String>(positions)
        })?
        .map_err(|e| relay_error(ErrorKind::Value, e))?;
    Ok(PyArray1::from_vec(py, positions))
}

/// A loader's error: a batch that cannot be gathered as asked is a `ValueError`, the others
/// (a file truncated while mapped, a corrupt file) keep their own classes.
fn batch_error(error: ExecError) -> PyErr {
    match error {
        ExecError::Batch(message) => relay_error(ErrorKind::Value, message),
        other => exec_error(other),
    }
}
