//! Batch gathering for training loops: a reader over a frame's executed view, a synchronous
//! `gather` (map-style datasets) and a prefetching `stream` (iterable datasets and loaders).
//!
//! Output buffers are allocated by the caller (NumPy arrays, possibly views of torch tensors in
//! pinned or shared memory) and written in place by the gather: the batch is copied once, into
//! the memory the framework will use. A stream runs producer threads that take submitted buffer
//! sets (each for the next batch of the shard), gather into them and hand them back, returned in
//! batch order; Python keeps `prefetch` sets submitted, so batches k+1..k+prefetch are gathered
//! while batch k trains, and waits with the GIL released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use numpy::npyffi::flags::NPY_ARRAY_WRITEABLE;
use numpy::{PyArray1, PyArrayDescr, PyArrayDescrMethods, PyReadonlyArray1, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::prelude::*;
use relay_exec::DenseDtype;
use relay_exec::batches::{BatchGroup, BatchSource, ColumnShape};
use relay_exec::execute::pool;
use relay_exec::order::{Order, Shuffle, epoch_order, shard_range};

use crate::errors::{ErrorKind, relay_error};
use crate::export::numpy::dense_to_numpy_writable;
use crate::frame::{NativeFrame, run_plan};

/// Per output: (padded values, lengths) for a ragged one, None for a fixed one.
type RaggedDense = Vec<Option<(relay_exec::DenseArray, relay_exec::DenseArray)>>;
/// The same as NumPy arrays.
type RaggedArrays<'py> = Vec<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>>;
/// A finished batch, tagged with its number.
type Ready = (u64, Result<Done, String>);

/// One output of a batch: a stacked group of fixed-width columns, or one ragged column.
#[derive(Debug, Clone)]
enum Output {
    Fixed { group: BatchGroup, width: usize },
    Ragged { column: usize, dtype: DenseDtype, fill_null: Option<f64> },
}

/// An output as Python describes it: (column positions in the reader, NumPy dtype string,
/// fill value for nulls).
type OutputSpec = (Vec<usize>, String, Option<f64>);

fn dtype_of(code: &str) -> PyResult<DenseDtype> {
    Ok(match code.trim_start_matches(['<', '|', '=']) {
        "b1" => DenseDtype::Bool,
        "i1" => DenseDtype::Int8,
        "i2" => DenseDtype::Int16,
        "i4" => DenseDtype::Int32,
        "i8" => DenseDtype::Int64,
        "u1" => DenseDtype::UInt8,
        "u2" => DenseDtype::UInt16,
        "u4" => DenseDtype::UInt32,
        "u8" => DenseDtype::UInt64,
        "f2" => DenseDtype::Float16,
        "f4" => DenseDtype::Float32,
        "f8" => DenseDtype::Float64,
        _ => return Err(relay_error(ErrorKind::Type, format!("a batch cannot hold dtype {code}: use a numeric or boolean dtype"))),
    })
}

fn parse_outputs(source: &BatchSource, specs: Vec<OutputSpec>) -> PyResult<Vec<Output>> {
    specs
        .into_iter()
        .map(|(columns, dtype, fill_null)| {
            let dtype = dtype_of(&dtype)?;
            if let Some(&c) = columns.iter().find(|&&c| c >= source.columns().len()) {
                return Err(relay_error(ErrorKind::Value, format!("internal: output column {c} is not in the reader")));
            }
            if let [column] = columns[..]
                && source.columns()[column].shape == ColumnShape::Ragged
            {
                return Ok(Output::Ragged { column, dtype, fill_null });
            }
            let group = BatchGroup { columns, dtype, fill_null };
            let width = source.group_width(&group).map_err(|e| relay_error(ErrorKind::Type, e))?;
            Ok(Output::Fixed { group, width })
        })
        .collect()
}

/// A writable, C-contiguous NumPy array's memory, checked to hold `rows` rows of `width` cells
/// of `dtype`.
struct OutputMemory {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the pointer is only dereferenced by the one thread that owns the job holding it, and
// the job also holds a reference to the array that owns the memory (see `output_memory`).
unsafe impl Send for OutputMemory {}

fn output_memory(array: &Bound<'_, PyAny>, rows: usize, width: usize, expected: &Bound<'_, PyArrayDescr>) -> PyResult<OutputMemory> {
    let bad = |what: String| relay_error(ErrorKind::Value, format!("batch output buffer: {what}"));
    let array = array.cast::<PyUntypedArray>().map_err(|_| bad("expected a NumPy array".into()))?;
    // An equivalence check in C: reading the dtype's `str` here cost most of a submit.
    if !array.dtype().is_equiv_to(expected) {
        return Err(bad(format!("dtype {}, expected {}", array.dtype(), expected)));
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
        return Err(bad(format!("holds {len} bytes, {needed} needed for {rows} rows of {width} cells")));
    }
    Ok(OutputMemory { ptr: data.cast(), len })
}

/// Positions as row numbers, refusing negative ones.
fn positions_of(positions: &PyReadonlyArray1<'_, i64>) -> PyResult<Vec<u64>> {
    let slice = positions.as_slice().map_err(|_| relay_error(ErrorKind::Value, "indices must be contiguous"))?;
    slice
        .iter()
        .map(|&p| u64::try_from(p).map_err(|_| relay_error(ErrorKind::Value, format!("index {p} is negative"))))
        .collect()
}

/// Gathers one batch: fixed outputs into `memories` (same order, None for ragged outputs),
/// ragged outputs returned as (padded, lengths).
fn gather_batch(
    source: &BatchSource,
    outputs: &[Output],
    positions: &[u64],
    memories: &[Option<OutputMemory>],
) -> Result<RaggedDense, String> {
    outputs
        .iter()
        .zip(memories)
        .map(|(output, memory)| match output {
            Output::Fixed { group, .. } => {
                let memory = memory.as_ref().ok_or("internal: no buffer for a fixed output")?;
                // SAFETY: `memory` describes `len` bytes of a writable NumPy array that the
                // caller keeps alive for the duration of this call and does not touch meanwhile
                // (the Python side hands a buffer to one gather at a time).
                let out = unsafe { std::slice::from_raw_parts_mut(memory.ptr, memory.len) };
                source.gather(group, positions, out).map(|()| None)
            }
            Output::Ragged { column, dtype, fill_null } => source.gather_ragged(*column, *dtype, *fill_null, positions).map(Some),
        })
        .collect()
}

fn ragged_to_python<'py>(
    py: Python<'py>,
    ragged: RaggedDense,
) -> PyResult<RaggedArrays<'py>> {
    ragged
        .into_iter()
        .map(|pair| pair.map(|(padded, lengths)| Ok((dense_to_numpy_writable(py, padded)?, dense_to_numpy_writable(py, lengths)?))).transpose())
        .collect()
}

#[pyclass(frozen, module = "relay_ml._relay")]
pub struct NativeBatchReader {
    source: Arc<BatchSource>,
}

#[pymethods]
impl NativeBatchReader {
    /// Executes `frame`'s plan once and prepares `columns` for gathering.
    #[new]
    fn new(py: Python<'_>, frame: PyRef<'_, NativeFrame>, columns: Vec<String>) -> PyResult<Self> {
        let view = run_plan(py, &frame.plan)?;
        let indices = columns
            .iter()
            .map(|name| {
                view.schema.index_of(name).map_err(|_| {
                    let known: Vec<&str> = view.schema.fields().iter().map(|f| f.name().as_str()).collect();
                    relay_error(ErrorKind::ColumnNotFound, format!("column '{name}' not found; the frame has: {}", known.join(", ")))
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let source = BatchSource::new(&view, &indices).map_err(|e| relay_error(ErrorKind::Type, e))?;
        Ok(Self { source: Arc::new(source) })
    }

    #[getter]
    fn num_rows(&self) -> u64 {
        self.source.num_rows()
    }

    /// (name, natural NumPy dtype string, cells per row or None for ragged) per column.
    fn column_info(&self) -> Vec<(String, String, Option<usize>)> {
        self.source
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
        let outputs = parse_outputs(&self.source, outputs)?;
        let positions = positions_of(&positions)?;
        let memories = checked_memories(&outputs, &output_descrs(py, &outputs)?, &buffers, positions.len())?;
        let source = self.source.clone();
        let ragged = py
            .detach(move || gather_batch(&source, &outputs, &positions, &memories))
            .map_err(|e| relay_error(ErrorKind::Value, e))?;
        ragged_to_python(py, ragged)
    }

    /// A prefetching stream over one shard of one epoch (see `NativeBatchStream`).
    #[pyo3(signature = (outputs, *, shuffle, seed, epoch, block_rows, buffer_rows, shard, shards, batch_size, drop_last, start_batch))]
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
    ) -> PyResult<NativeBatchStream> {
        let outputs = parse_outputs(&self.source, outputs)?;
        let shuffle = shuffle_of(shuffle, block_rows, buffer_rows)?;
        if batch_size == 0 || shards == 0 || shard >= shards {
            return Err(relay_error(ErrorKind::Value, format!("invalid stream: batch_size={batch_size}, shard {shard} of {shards}")));
        }
        let range = shard_range(self.source.num_rows(), shard, shards);
        let rows = range.end - range.start;
        let num_batches = if drop_last { rows / batch_size } else { rows.div_ceil(batch_size) };
        let num_rows = self.source.num_rows();
        let order = py.detach(|| epoch_order(num_rows, shuffle, seed, epoch)).map_err(|e| relay_error(ErrorKind::Value, e))?;
        let plan = Arc::new(ShardPlan {
            source: self.source.clone(),
            outputs: outputs.clone(),
            order,
            range,
            batch_size,
        });
        let (job_sender, job_receiver) = channel::<Job>();
        let job_receiver = Arc::new(Mutex::new(job_receiver));
        let (ready_sender, ready_receiver) = channel::<Ready>();
        // Batches are gathered by up to two threads at once, each into its own buffers: with
        // one thread the loader waited on the gather (shuffled `tab` batches: 8 M rows/s on two
        // cores); with two, and two batches ahead per thread, 13.5 M rows/s.
        let producers = pool().current_num_threads().clamp(1, 2);
        let threads = (0..producers)
            .map(|i| {
                let (plan, jobs, ready) = (plan.clone(), job_receiver.clone(), ready_sender.clone());
                std::thread::Builder::new()
                    .name(format!("relay-loader-{i}"))
                    .spawn(move || produce(&plan, &jobs, &ready))
                    .map_err(|e| relay_error(ErrorKind::Relay, format!("cannot start a loader thread: {e}")))
            })
            .collect::<PyResult<Vec<_>>>()?;
        let start = start_batch.min(num_batches);
        Ok(NativeBatchStream {
            descrs: output_descrs(py, &outputs)?.into_iter().map(Bound::unbind).collect(),
            outputs,
            batch_size: batch_size as usize,
            num_batches,
            next_submitted: AtomicU64::new(start),
            next_returned: start,
            early: HashMap::new(),
            job_sender: Some(job_sender),
            ready_receiver: Mutex::new(Some(ready_receiver)),
            threads,
        })
    }
}

/// What the producer threads of one stream share: the columns, the epoch's order and the
/// shard's range of it.
struct ShardPlan {
    source: Arc<BatchSource>,
    outputs: Vec<Output>,
    order: Order,
    range: std::ops::Range<u64>,
    batch_size: u64,
}

/// A producer thread: takes jobs until the stream closes, gathers each job's batch into its
/// buffers and reports it (tagged with its batch number, since threads finish out of order).
fn produce(plan: &ShardPlan, jobs: &Mutex<Receiver<Job>>, ready: &Sender<Ready>) {
    let mut positions = Vec::with_capacity(plan.batch_size as usize);
    loop {
        let job = {
            let receiver = jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            receiver.recv()
        };
        let Ok(job) = job else { return };
        let first = plan.range.start + job.batch * plan.batch_size;
        positions.clear();
        plan.order.extend_into(first..(first + plan.batch_size).min(plan.range.end), &mut positions);
        let result = gather_batch(&plan.source, &plan.outputs, &positions, &job.memories).map(|ragged| Done {
            rows: positions.len(),
            buffers: job.buffers,
            ragged,
        });
        if ready.send((job.batch, result)).is_err() {
            return;
        }
    }
}

fn shuffle_of(name: &str, block_rows: u64, buffer_rows: u64) -> PyResult<Shuffle> {
    Ok(match name {
        "none" => Shuffle::Sequential,
        "global" => Shuffle::Global,
        "block" => Shuffle::Block { block_rows, buffer_rows },
        other => {
            return Err(relay_error(ErrorKind::Value, format!("shuffle must be None, 'global' or 'block', not {other:?}")));
        }
    })
}

/// The NumPy dtype of each output's buffer.
fn output_descrs<'py>(py: Python<'py>, outputs: &[Output]) -> PyResult<Vec<Bound<'py, PyArrayDescr>>> {
    outputs
        .iter()
        .map(|output| {
            let dtype = match output {
                Output::Fixed { group, .. } => group.dtype,
                Output::Ragged { dtype, .. } => *dtype,
            };
            PyArrayDescr::new(py, dtype.numpy_str().as_str())
        })
        .collect()
}

fn checked_memories(
    outputs: &[Output],
    descrs: &[Bound<'_, PyArrayDescr>],
    buffers: &[Option<Bound<'_, PyAny>>],
    rows: usize,
) -> PyResult<Vec<Option<OutputMemory>>> {
    if buffers.len() != outputs.len() {
        return Err(relay_error(ErrorKind::Value, format!("{} buffers given for {} outputs", buffers.len(), outputs.len())));
    }
    outputs
        .iter()
        .zip(descrs)
        .zip(buffers)
        .map(|((output, descr), buffer)| match (output, buffer) {
            (Output::Fixed { width, .. }, Some(buffer)) => output_memory(buffer, rows, *width, descr).map(Some),
            (Output::Fixed { .. }, None) => Err(relay_error(ErrorKind::Value, "a buffer is needed for every fixed-width output")),
            (Output::Ragged { .. }, _) => Ok(None),
        })
        .collect()
}

/// Buffers handed to the producers for batch `batch`, with the arrays that own their memory.
struct Job {
    batch: u64,
    buffers: Vec<Option<Py<PyAny>>>,
    memories: Vec<Option<OutputMemory>>,
}

/// A gathered batch: its row count, the filled buffers, and the ragged outputs.
struct Done {
    rows: usize,
    buffers: Vec<Option<Py<PyAny>>>,
    ragged: RaggedDense,
}

/// Batches of one shard of one epoch, gathered ahead by producer threads into buffers the
/// caller submits, and returned in order. Dropping or closing it stops the producers.
#[pyclass(module = "relay_ml._relay")]
pub struct NativeBatchStream {
    outputs: Vec<Output>,
    descrs: Vec<Py<PyArrayDescr>>,
    batch_size: usize,
    num_batches: u64,
    /// The batch the next submitted buffers are for.
    next_submitted: AtomicU64,
    /// The batch `next` returns next.
    next_returned: u64,
    /// Batches that finished before an earlier one.
    early: HashMap<u64, Done>,
    job_sender: Option<Sender<Job>>,
    /// In a mutex only because a pyclass must be Sync; the stream is used from one thread.
    ready_receiver: Mutex<Option<Receiver<Ready>>>,
    threads: Vec<JoinHandle<()>>,
}

#[pymethods]
impl NativeBatchStream {
    /// Batches in the shard for the epoch (including those skipped by `start_batch`).
    #[getter]
    fn num_batches(&self) -> u64 {
        self.num_batches
    }

    /// Threads gathering batches at once.
    #[getter]
    fn producers(&self) -> usize {
        self.threads.len()
    }

    /// Batches not yet returned by `next`.
    #[getter]
    fn remaining(&self) -> u64 {
        self.num_batches - self.next_returned
    }

    /// Hands one set of buffers (one per fixed output, `batch_size` rows each; None for
    /// ragged outputs) to the producers, for the next batch not yet given buffers.
    fn submit(&self, py: Python<'_>, buffers: Vec<Option<Bound<'_, PyAny>>>) -> PyResult<()> {
        let descrs: Vec<Bound<'_, PyArrayDescr>> = self.descrs.iter().map(|d| d.bind(py).clone()).collect();
        let memories = checked_memories(&self.outputs, &descrs, &buffers, self.batch_size)?;
        let Some(sender) = &self.job_sender else {
            return Err(relay_error(ErrorKind::Value, "the batch stream is closed"));
        };
        let batch = self.next_submitted.fetch_add(1, Ordering::Relaxed);
        if batch >= self.num_batches {
            return Err(relay_error(ErrorKind::Value, format!("all {} batches already have buffers", self.num_batches)));
        }
        let job = Job {
            batch,
            buffers: buffers.into_iter().map(|b| b.map(Bound::unbind)).collect(),
            memories,
        };
        // A send fails only once the producers have stopped; the buffers are then unused.
        let _ = sender.send(job);
        Ok(())
    }

    /// The next batch, waiting with the GIL released: (rows, buffers, ragged outputs), or None
    /// at the end of the shard.
    #[allow(clippy::type_complexity)]
    fn next<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<Option<(usize, Vec<Option<Py<PyAny>>>, RaggedArrays<'py>)>> {
        if self.next_returned >= self.num_batches || self.job_sender.is_none() {
            return Ok(None);
        }
        if self.next_returned >= self.next_submitted.load(Ordering::Relaxed) {
            return Err(relay_error(ErrorKind::Value, "no buffers were submitted for the next batch"));
        }
        let wanted = self.next_returned;
        let done = loop {
            if let Some(done) = self.early.remove(&wanted) {
                break done;
            }
            // A receiver is not Sync: move it into the closure that waits without the GIL.
            let Some(receiver) = self.receiver_slot().take() else {
                return Ok(None);
            };
            let (receiver, received) = py.detach(move || {
                let received = receiver.recv();
                (receiver, received)
            });
            *self.receiver_slot() = Some(receiver);
            match received {
                Ok((batch, Ok(done))) if batch == wanted => break done,
                Ok((batch, Ok(done))) => {
                    self.early.insert(batch, done);
                }
                Ok((_, Err(message))) => {
                    self.close();
                    return Err(relay_error(ErrorKind::Value, message));
                }
                Err(_) => {
                    self.close();
                    return Err(relay_error(ErrorKind::Relay, "the loader threads stopped before the end of the epoch"));
                }
            }
        };
        self.next_returned += 1;
        Ok(Some((done.rows, done.buffers, ragged_to_python(py, done.ragged)?)))
    }

    /// Stops the producers (after the batches they are gathering) and waits for them.
    fn close(&mut self) {
        self.job_sender = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.early.clear();
    }
}

impl NativeBatchStream {
    fn receiver_slot(&self) -> std::sync::MutexGuard<'_, Option<Receiver<Ready>>> {
        self.ready_receiver.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for NativeBatchStream {
    fn drop(&mut self) {
        self.close();
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
    let shuffle = shuffle_of(shuffle, block_rows, buffer_rows)?;
    let order = py.detach(|| epoch_order(num_rows, shuffle, seed, epoch)).map_err(|e| relay_error(ErrorKind::Value, e))?;
    let mut positions = Vec::with_capacity(order.len() as usize);
    order.extend_into(0..order.len(), &mut positions);
    Ok(PyArray1::from_vec(py, positions))
}
