//! `Join`: a hash join of two executed inputs.
//!
//! 1. Both inputs are executed; their key expressions are evaluated over the selected rows
//!    into dense arrays (a copy of the key columns only) and cast to the type both sides
//!    compare in (`relay_plan::join::join_key_type`). A row with a null in any key matches
//!    nothing.
//! 2. Build: a hash table over the keys of one side maps each distinct key to its first row,
//!    and a `next` array chains the rows with the same key in ascending order (the table is
//!    filled from the last row backwards, each row pointing at the previous head). A single
//!    integer key (after the cast: int64, or a narrower integer widened to it) is hashed as
//!    an `i64`; up to two integer-like or short string keys are packed into one `u128`
//!    (`crate::keys`) when every value of both sides fits; any other keys are encoded in
//!    arrow-rs's row format (`RowConverter`: all the keys of a row as one byte string, equal
//!    exactly when the keys are) and hashed as bytes. The integer path is measured at about
//!    5x the row format's speed: 2 M left rows joined with 200 k right rows on an int64 key,
//!    115 ms end to end (export included) against 615 ms for the same join on (key, a
//!    constant int64) through the row format (dev build, 2 cores; Polars took 59 ms for the
//!    int64 join).
//!    A large build side is split by key hash and its partitions built in parallel (`Table`).
//! 3. Probe: the other side's rows, in morsels of `MORSEL_ROWS` in parallel on the pool, each
//!    walking its key's chain. A morsel yields pairs of positions (left row, right row), with
//!    `NO_ROW` on the side a row of a left / right / full join has no match on.
//!
//! Which side is built, and the order of the output rows (Polars' `maintain_order="left_right"`,
//! `"right_left"` for right joins; checked by the differential tests): semi and anti joins
//! build the right side and keep left rows in left order. The other joins build the smaller
//! input (by rows, counted after both are executed); pairs come in the probe side's order and,
//! where that is not the output's, are put in it by a stable counting sort on the build side's
//! row (linear; `in_order_of`), which also places the build side's unmatched rows of a left,
//! right or full join:
//! - inner, left: left order, the matches of one left row in right order.
//! - right: right order, the matches of one right row in left order.
//! - full: the left rows in left order (each with its matches, or alone), then the right rows
//!   without a match in right order.
//!
//! Output representation. A `Chunk` has one selection shared by all its columns, so it cannot
//! say "left columns at these rows, right columns at those". Semi and anti joins need only the
//! left rows: their output is a take of the left input (a selection, gathered when exported,
//! like a filter's). The other joins gather every output column once, here, into fresh arrays
//! (arrow's `take` from a side that is one chunk, `interleave` from several, a null row where a
//! side has no match). This keeps the property that matters: projection pruning runs before
//! execution and narrows the join's columns and both inputs to what is read above, so a join
//! followed by `select` gathers each selected column exactly once and no other column at all.
//! The inputs' selections are resolved into row ids at that gather (their columns are read
//! through them, never copied whole first). A filter that stays above a join (over both
//! sides' columns, or above a full join) selects rows of the gathered arrays, which are then
//! gathered once more when exported.

use std::hash::{BuildHasher, BuildHasherDefault, Hash};
use std::sync::atomic::{AtomicU32, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array, new_empty_array, new_null_array};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::compute::{CastOptions, cast_with_options, interleave, take};
use arrow::datatypes::{DataType, Int64Type, SchemaRef};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};
use rayon::prelude::*;
use relay_plan::join::join_key_type;
use relay_plan::{Expr, JoinColumn, JoinSide, JoinType};

use crate::error::ExecError;
use crate::keys::{KeyHasher, KeyMap, Nulls, fits, pack};
use crate::pool::{MORSEL_ROWS, pool};
use crate::sort::dense_values;
use crate::view::{Chunk, ViewSet};

/// The position that stands for "no row on this side" in a pair.
const NO_ROW: u32 = u32::MAX;

/// The build side's rows by key: `heads` maps each key to its first row, `next[row]` is the
/// following row with the same key (or `NO_ROW`).
///
/// A build side of `PARTITIONED_BUILD_ROWS` rows or more is split by key hash into
/// `BUILD_PARTITIONS` tables, built in parallel: its rows are first bucketed by partition
/// (morsels in parallel, buckets kept in row order), then each partition's table is filled on
/// its own task. Every row belongs to one partition, so the tasks write disjoint `next` slots.
struct Table<K> {
    heads: Vec<KeyMap<K, u32>>,
    next: Vec<AtomicU32>,
}

/// The build-side rows from which the table is partitioned and built in parallel.
const PARTITIONED_BUILD_ROWS: usize = 1 << 18;
const BUILD_PARTITIONS: usize = 16;

/// The partition of a key: bits 20.. of its hash, apart from the low bits a partition's table
/// indexes by and the high bits it tags entries with.
fn partition_of<K: Hash>(key: &K) -> usize {
    (BuildHasherDefault::<KeyHasher>::default().hash_one(key) >> 20) as usize % BUILD_PARTITIONS
}

impl<K: Hash + Eq + Send> Table<K> {
    /// The table of `rows` rows whose keys `key(row)` gives (None: a null key, left out).
    fn build(rows: usize, key: impl Fn(usize) -> Option<K> + Sync) -> Self {
        let next: Vec<AtomicU32> = (0..rows).map(|_| AtomicU32::new(NO_ROW)).collect();
        // Filled from the last row backwards, each row pointing at the previous head, so
        // chains ascend.
        let fill = |heads: &mut KeyMap<K, u32>, rows: &mut dyn Iterator<Item = usize>| {
            for row in rows {
                if let Some(key) = key(row) {
                    next[row].store(
                        heads.insert(key, row as u32).unwrap_or(NO_ROW),
                        Ordering::Relaxed,
                    );
                }
            }
        };
        if rows < PARTITIONED_BUILD_ROWS {
            let mut heads = KeyMap::with_capacity_and_hasher(rows, BuildHasherDefault::default());
            fill(&mut heads, &mut (0..rows).rev());
            return Table {
                heads: vec![heads],
                next,
            };
        }
        let buckets: Vec<Vec<Vec<u32>>> = pool().install(|| {
            (0..rows)
                .into_par_iter()
                .step_by(MORSEL_ROWS)
                .map(|start| {
                    let mut buckets = vec![Vec::new(); BUILD_PARTITIONS];
                    for row in start..(start + MORSEL_ROWS).min(rows) {
                        if let Some(key) = key(row) {
                            buckets[partition_of(&key)].push(row as u32);
                        }
                    }
                    buckets
                })
                .collect()
        });
        let heads = pool().install(|| {
            (0..BUILD_PARTITIONS)
                .into_par_iter()
                .map(|partition| {
                    let count = buckets.iter().map(|b| b[partition].len()).sum();
                    let mut heads =
                        KeyMap::with_capacity_and_hasher(count, BuildHasherDefault::default());
                    fill(
                        &mut heads,
                        &mut buckets
                            .iter()
                            .rev()
                            .flat_map(|b| b[partition].iter().rev().map(|&row| row as usize)),
                    );
                    heads
                })
                .collect()
        });
        Table { heads, next }
    }

    /// The first row with key `key` (`NO_ROW`: none).
    fn head(&self, key: &K) -> u32 {
        let heads = match self.heads.as_slice() {
            [heads] => heads,
            partitions => &partitions[partition_of(key)],
        };
        heads.get(key).copied().unwrap_or(NO_ROW)
    }

    /// The rows of the chain that starts at `row`, ascending.
    fn chain(&self, mut row: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::from_fn(move || {
            (row != NO_ROW).then(|| {
                let current = row;
                row = self.next[current as usize].load(Ordering::Relaxed);
                current
            })
        })
    }
}

/// The keys of one side, ready to hash: a single integer key as int64 values, up to two
/// narrow keys packed into a `u128` (`crate::keys`), or the row format of all keys; `valid`
/// says which rows have no null key.
enum SideKeys {
    Int {
        /// The key's values (the key array's own buffer when it already is int64).
        values: ScalarBuffer<i64>,
        valid: Option<NullBuffer>,
    },
    /// Keys that pack (`crate::keys::fits`): packed when used, the build side whole, the probe
    /// side one morsel at a time. Packing a 6 M-row probe side up front wrote 96 MB (plus
    /// 2 x 48 MB of words) into fresh pages; per morsel it stays in cache.
    Packed {
        keys: Vec<ArrayRef>,
        valid: Option<NullBuffer>,
    },
    Rows {
        rows: Rows,
        valid: Option<NullBuffer>,
    },
}

impl SideKeys {
    fn valid(&self) -> Option<&NullBuffer> {
        match self {
            SideKeys::Int { valid, .. }
            | SideKeys::Packed { valid, .. }
            | SideKeys::Rows { valid, .. } => valid.as_ref(),
        }
    }

    fn is_valid(&self, row: usize) -> bool {
        self.valid().is_none_or(|valid| valid.is_valid(row))
    }
}

/// The key arrays of both sides as hashable keys (see `SideKeys`).
fn side_keys(
    left: Vec<ArrayRef>,
    right: Vec<ArrayRef>,
) -> Result<(SideKeys, SideKeys), ArrowError> {
    let validity = |arrays: &[ArrayRef]| {
        arrays.iter().fold(None, |acc: Option<NullBuffer>, a| {
            NullBuffer::union(acc.as_ref(), a.logical_nulls().as_ref())
        })
    };
    let (left_valid, right_valid) = (validity(&left), validity(&right));
    if let ([l], [r]) = (left.as_slice(), right.as_slice())
        && l.data_type().is_integer()
        && l.data_type() != &DataType::UInt64
    {
        let as_i64 = |array: &ArrayRef| -> Result<ScalarBuffer<i64>, ArrowError> {
            let array = cast_with_options(array, &DataType::Int64, &CastOptions::default())?;
            Ok(array.as_primitive::<Int64Type>().values().clone())
        };
        return Ok((
            SideKeys::Int {
                values: as_i64(l)?,
                valid: left_valid,
            },
            SideKeys::Int {
                values: as_i64(r)?,
                valid: right_valid,
            },
        ));
    }
    // Both sides pack, or neither does: a packed key never meets an encoded one.
    if fits(&left, Nulls::Ignored) && fits(&right, Nulls::Ignored) {
        return Ok((
            SideKeys::Packed {
                keys: left,
                valid: left_valid,
            },
            SideKeys::Packed {
                keys: right,
                valid: right_valid,
            },
        ));
    }
    let converter = RowConverter::new(
        left.iter()
            .map(|a| SortField::new(a.data_type().clone()))
            .collect(),
    )?;
    Ok((
        SideKeys::Rows {
            rows: converter.convert_columns(&left)?,
            valid: left_valid,
        },
        SideKeys::Rows {
            rows: converter.convert_columns(&right)?,
            valid: right_valid,
        },
    ))
}

/// The keys of `view` (`exprs` over its selected rows), cast to the types both sides compare in.
fn key_arrays(
    view: &ViewSet,
    exprs: &[Expr],
    types: &[DataType],
) -> Result<Vec<ArrayRef>, ExecError> {
    let arrays = dense_values(view, exprs)?;
    // Safe casts: an integer the common type cannot hold becomes null, and matches nothing
    // (no value of the other side can equal it).
    let options = CastOptions::default();
    Ok(arrays
        .into_iter()
        .zip(types)
        .map(|(array, to)| {
            if array.data_type() == to {
                Ok(array)
            } else {
                cast_with_options(&array, to, &options)
            }
        })
        .collect::<Result<_, _>>()?)
}

/// One bit per integer between the build side's smallest and largest key, set for the keys it
/// has: a probe key whose bit is clear has no match, found without touching the hash table.
/// Joins on keys that fill a range (order keys, dates) miss mostly: TPC-H Q3 probes 3.2 M
/// lineitem rows against 147 k orders and matches 30 k. A bitmap of a few MB stays in cache
/// where the table does not.
struct KeyBits {
    min: i64,
    words: Vec<u64>,
}

impl KeyBits {
    /// Bits of at most 2^26 keys (8 MiB); None for a wider range or no keys.
    const MAX_SPAN: u64 = 1 << 26;

    fn of(keys: impl Iterator<Item = i64> + Clone) -> Option<Self> {
        let (min, max) = keys
            .clone()
            .fold(None, |range: Option<(i64, i64)>, k| match range {
                None => Some((k, k)),
                Some((lo, hi)) => Some((lo.min(k), hi.max(k))),
            })?;
        let span = max.abs_diff(min);
        if span >= Self::MAX_SPAN {
            return None;
        }
        let mut words = vec![0u64; span as usize / 64 + 1];
        for k in keys {
            let bit = k.abs_diff(min) as usize;
            words[bit / 64] |= 1 << (bit % 64);
        }
        Some(KeyBits { min, words })
    }

    fn contains(&self, key: i64) -> bool {
        if key < self.min {
            return false;
        }
        let bit = key.abs_diff(self.min);
        bit < self.words.len() as u64 * 64 && self.words[bit as usize / 64] & (1 << (bit % 64)) != 0
    }
}

/// What the probe of one morsel gives: (probe row, build row) pairs; for semi / anti joins
/// only the probe rows kept.
struct Pairs {
    probe: Vec<u32>,
    build: Vec<u32>,
}

/// Probes rows `start .. start + len` of `probe` against `table`. `keep_unmatched`: a probe
/// row without a match still gives a pair (with `NO_ROW`); `mode` Some(true) keeps each probe
/// row with a match once (semi), Some(false) each without one (anti), None gives every pair.
#[allow(clippy::too_many_arguments)]
fn probe_morsel<K: Hash + Eq + Send>(
    table: &Table<K>,
    probe: &SideKeys,
    key: &(dyn Fn(usize) -> K + Sync),
    may_match: &(dyn Fn(usize) -> bool + Sync),
    (start, len): (usize, usize),
    keep_unmatched: bool,
    mode: Option<bool>,
) -> Pairs {
    let mut pairs = Pairs {
        probe: Vec::with_capacity(len),
        build: Vec::with_capacity(if mode.is_some() { 0 } else { len }),
    };
    let head = |row: usize| table.head(&key(row));
    for row in start..start + len {
        let valid = probe.is_valid(row) && may_match(row);
        match mode {
            Some(semi) => {
                let found = valid && head(row) != NO_ROW;
                if found == semi {
                    pairs.probe.push(row as u32);
                }
            }
            None => {
                let before = pairs.build.len();
                if valid {
                    for matched in table.chain(head(row)) {
                        pairs.probe.push(row as u32);
                        pairs.build.push(matched);
                    }
                }
                if keep_unmatched && pairs.build.len() == before {
                    pairs.probe.push(row as u32);
                    pairs.build.push(NO_ROW);
                }
            }
        }
    }
    pairs
}

/// Builds a table on `build` and probes it with every row of `probe` (`probe_rows` rows), in
/// morsels on the pool, in order.
fn probe_all(
    build: &SideKeys,
    build_rows: usize,
    probe: &SideKeys,
    probe_rows: usize,
    keep_unmatched: bool,
    mode: Option<bool>,
) -> Vec<Pairs> {
    let mut morsels: Vec<(usize, usize)> = (0..probe_rows)
        .step_by(MORSEL_ROWS)
        .map(|s| (s, MORSEL_ROWS.min(probe_rows - s)))
        .collect();
    if morsels.is_empty() {
        morsels.push((0, 0));
    }
    match (build, probe) {
        (
            SideKeys::Int {
                values: build_values,
                ..
            },
            SideKeys::Int {
                values: probe_values,
                ..
            },
        ) => {
            let table = Table::build(build_rows, |row| {
                build.is_valid(row).then(|| build_values[row])
            });
            let key = |row: usize| probe_values[row];
            let present = KeyBits::of(
                build_values
                    .iter()
                    .enumerate()
                    .filter(|(row, _)| build.is_valid(*row))
                    .map(|(_, &k)| k),
            );
            let may_match = |row: usize| {
                present
                    .as_ref()
                    .is_none_or(|bits| bits.contains(probe_values[row]))
            };
            pool().install(|| {
                morsels
                    .par_iter()
                    .map(|&m| {
                        probe_morsel(&table, probe, &key, &may_match, m, keep_unmatched, mode)
                    })
                    .collect()
            })
        }
        (
            SideKeys::Packed {
                keys: build_keys, ..
            },
            SideKeys::Packed {
                keys: probe_keys, ..
            },
        ) => {
            // `side_keys` checked that both sides fit.
            let packed = |keys: &[ArrayRef], (start, len): (usize, usize)| {
                let slices: Vec<ArrayRef> = keys.iter().map(|k| k.slice(start, len)).collect();
                pack(&slices, Nulls::Ignored).expect("keys checked to fit")
            };
            let build_values = packed(build_keys, (0, build_rows));
            let table = Table::build(build_rows, |row| {
                build.is_valid(row).then(|| build_values[row])
            });
            pool().install(|| {
                morsels
                    .par_iter()
                    .map(|&(start, len)| {
                        let probe_values = packed(probe_keys, (start, len));
                        let key = |row: usize| probe_values[row - start];
                        probe_morsel(
                            &table,
                            probe,
                            &key,
                            &|_| true,
                            (start, len),
                            keep_unmatched,
                            mode,
                        )
                    })
                    .collect()
            })
        }
        (
            SideKeys::Rows {
                rows: build_keys, ..
            },
            SideKeys::Rows {
                rows: probe_keys, ..
            },
        ) => {
            let table = Table::build(build_rows, |row| {
                build.is_valid(row).then(|| build_keys.row(row).data())
            });
            let key = |row: usize| probe_keys.row(row).data();
            pool().install(|| {
                morsels
                    .par_iter()
                    .map(|&m| probe_morsel(&table, probe, &key, &|_| true, m, keep_unmatched, mode))
                    .collect()
            })
        }
        // Both sides are prepared together, so they always have the same kind.
        _ => vec![Pairs {
            probe: vec![],
            build: vec![],
        }],
    }
}

/// Gathers one side's columns at positions among its selected rows (`NO_ROW`: a null).
struct Side<'a> {
    view: &'a ViewSet,
    /// The position of each chunk's first selected row.
    starts: Vec<usize>,
}

impl<'a> Side<'a> {
    fn new(view: &'a ViewSet) -> Self {
        let mut starts = Vec::with_capacity(view.chunks.len());
        let mut total = 0;
        for chunk in &view.chunks {
            starts.push(total);
            total += chunk.num_selected();
        }
        Side { view, starts }
    }

    /// (chunk, row in the chunk's arrays) of position `position`.
    fn locate(&self, position: usize) -> (usize, usize) {
        let c = if self.starts.len() == 1 {
            0
        } else {
            self.starts.partition_point(|&s| s <= position) - 1
        };
        let chunk = &self.view.chunks[c];
        let offset = position - self.starts[c];
        (
            c,
            chunk
                .selection
                .as_ref()
                .map_or(offset, |s| s[offset] as usize),
        )
    }

    /// Where `positions` (`NO_ROW`: a null) are in the chunks, for `gather`.
    fn locate_all(&self, positions: &[u32]) -> Located {
        let chunks = &self.view.chunks;
        if positions.is_empty() {
            Located::Empty
        } else if chunks.is_empty() || positions.iter().all(|&p| p == NO_ROW) {
            Located::Nulls(positions.len())
        } else if chunks.len() == 1 {
            Located::One(
                positions
                    .iter()
                    .map(|&p| (p != NO_ROW).then(|| self.locate(p as usize).1 as u32))
                    .collect(),
            )
        } else {
            // A null is row 0 of a one-row null array after the chunks' arrays.
            Located::Many(
                positions
                    .iter()
                    .map(|&p| {
                        if p == NO_ROW {
                            (chunks.len(), 0)
                        } else {
                            self.locate(p as usize)
                        }
                    })
                    .collect(),
            )
        }
    }

    /// Column `name` at the positions `located`.
    fn gather(&self, name: &str, located: &Located) -> Result<ArrayRef, ArrowError> {
        let index = self.view.schema.index_of(name)?;
        let data_type = self.view.schema.field(index).data_type();
        let chunks = &self.view.chunks;
        match located {
            Located::Empty => Ok(new_empty_array(data_type)),
            Located::Nulls(len) => Ok(new_null_array(data_type, *len)),
            Located::One(indices) => take(chunks[0].columns[index].as_ref(), indices, None),
            Located::Many(pairs) => {
                let null_row = new_null_array(data_type, 1);
                let mut sources: Vec<&dyn Array> =
                    chunks.iter().map(|c| c.columns[index].as_ref()).collect();
                sources.push(null_row.as_ref());
                interleave(&sources, pairs)
            }
        }
    }
}

/// Positions among one side's selected rows, located in its chunks once for every column
/// gathered there, not again per column.
enum Located {
    Empty,
    /// Only nulls (`NO_ROW`s, or a side without chunks), this many.
    Nulls(usize),
    /// Rows of the only chunk (null for `NO_ROW`).
    One(UInt32Array),
    /// (chunk, row) pairs; a null is row 0 of chunk `chunks.len()`.
    Many(Vec<(usize, usize)>),
}

/// Joins `left` and `right` (executed inputs) on `left_on[i] == right_on[i]`, producing
/// `columns` under `schema` (the join node's output schema).
pub fn join(
    left: ViewSet,
    right: ViewSet,
    left_on: &[Expr],
    right_on: &[Expr],
    how: JoinType,
    columns: &[JoinColumn],
    schema: SchemaRef,
) -> Result<ViewSet, ExecError> {
    let (left_rows, right_rows) = (left.num_rows(), right.num_rows());
    if left_rows >= NO_ROW as usize || right_rows >= NO_ROW as usize {
        return Err(ExecError::Arrow(ArrowError::InvalidArgumentError(format!(
            "join(): inputs of {left_rows} and {right_rows} rows; each side may have at most {} rows",
            NO_ROW - 1
        ))));
    }
    let left_types: Vec<DataType> = dense_types(&left, left_on)?;
    let right_types: Vec<DataType> = dense_types(&right, right_on)?;
    let types = left_types
        .iter()
        .zip(&right_types)
        .map(|(l, r)| {
            join_key_type(l, r).ok_or_else(|| {
                ExecError::Arrow(ArrowError::InvalidArgumentError(format!(
                    "join(): keys of types {l} and {r} cannot be compared"
                )))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (left_keys, right_keys) = side_keys(
        key_arrays(&left, left_on, &types)?,
        key_arrays(&right, right_on, &types)?,
    )?;

    if how.filters_left() {
        let kept = probe_all(
            &right_keys,
            right_rows,
            &left_keys,
            left_rows,
            false,
            Some(how == JoinType::Semi),
        );
        let positions: Vec<u64> = kept
            .iter()
            .flat_map(|p| p.probe.iter().map(|&r| u64::from(r)))
            .collect();
        // Only the columns the node keeps (a projection above may have pruned some).
        let taken = crate::nodes::take(left, &positions)?;
        let indices = columns
            .iter()
            .map(|column| taken.schema.index_of(&column.name))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(taken.select_columns(&indices, schema));
    }
    // (left position, right position) pairs, per probe morsel. The smaller side is built; the
    // pairs then come in the probe side's order and are counting-sorted into the order the
    // join type gives (left order, or right order for right joins), unmatched rows of the
    // preserved side placed among them.
    let build_left = match how {
        JoinType::Right => left_rows <= right_rows,
        _ => left_rows < right_rows,
    };
    let mut parts: Vec<(Vec<u32>, Vec<u32>)> = if build_left {
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = probe_all(
            &left_keys,
            left_rows,
            &right_keys,
            right_rows,
            how == JoinType::Right,
            None,
        )
        .into_iter()
        .map(|p| (p.build, p.probe))
        .collect();
        match how {
            JoinType::Right => pairs,
            _ => in_order_of(
                pairs,
                left_rows,
                true,
                matches!(how, JoinType::Left | JoinType::Full),
            ),
        }
    } else {
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = probe_all(
            &right_keys,
            right_rows,
            &left_keys,
            left_rows,
            matches!(how, JoinType::Left | JoinType::Full),
            None,
        )
        .into_iter()
        .map(|p| (p.probe, p.build))
        .collect();
        match how {
            JoinType::Right => in_order_of(pairs, right_rows, false, true),
            _ => pairs,
        }
    };
    if how == JoinType::Full {
        let mut matched = vec![false; right_rows];
        for (_, rights) in &parts {
            for &r in rights.iter().filter(|&&r| r != NO_ROW) {
                matched[r as usize] = true;
            }
        }
        let unmatched: Vec<u32> = (0..right_rows as u32)
            .filter(|&r| !matched[r as usize])
            .collect();
        if !unmatched.is_empty() {
            parts.push((vec![NO_ROW; unmatched.len()], unmatched));
        }
    }
    let (left_side, right_side) = (Side::new(&left), Side::new(&right));
    let chunks: Result<Vec<Chunk>, ArrowError> = pool().install(|| {
        parts
            .par_iter()
            .map(|(lefts, rights)| {
                let gathers = |side: JoinSide| columns.iter().any(|c| c.side == side);
                let lefts_located = if gathers(JoinSide::Left) {
                    left_side.locate_all(lefts)
                } else {
                    Located::Empty
                };
                let rights_located = if gathers(JoinSide::Right) {
                    right_side.locate_all(rights)
                } else {
                    Located::Empty
                };
                let arrays = columns
                    .iter()
                    .map(|column| match column.side {
                        JoinSide::Left => left_side.gather(&column.name, &lefts_located),
                        JoinSide::Right => right_side.gather(&column.name, &rights_located),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Chunk {
                    columns: arrays,
                    len: lefts.len(),
                    selection: None,
                })
            })
            .collect()
    });
    Ok(ViewSet {
        schema,
        chunks: chunks?,
    })
}

/// (left, right) pairs put in the order of one side's rows (`by_left`: the left side's, of
/// `rows` rows; else the right side's): a stable counting sort, so each row's matches keep the
/// order they came in (the probe side's). With `keep_unmatched`, each row of that side without
/// a pair gets one, with `NO_ROW` on the other side. Split into morsel-sized parts.
fn in_order_of(
    parts: Vec<(Vec<u32>, Vec<u32>)>,
    rows: usize,
    by_left: bool,
    keep_unmatched: bool,
) -> Vec<(Vec<u32>, Vec<u32>)> {
    let row_of = |pair: (u32, u32)| (if by_left { pair.0 } else { pair.1 }) as usize;
    let mut starts = vec![0usize; rows + 1];
    for (lefts, rights) in &parts {
        for (&l, &r) in lefts.iter().zip(rights) {
            starts[row_of((l, r)) + 1] += 1;
        }
    }
    if keep_unmatched {
        for count in &mut starts[1..] {
            *count = (*count).max(1);
        }
    }
    for row in 0..rows {
        starts[row + 1] += starts[row];
    }
    let total = starts[rows];
    let (mut lefts_sorted, mut rights_sorted) = (vec![NO_ROW; total], vec![NO_ROW; total]);
    if keep_unmatched {
        // Every row's first slot names it; a row with pairs has it overwritten by its first.
        for row in 0..rows {
            let own = if by_left {
                &mut lefts_sorted
            } else {
                &mut rights_sorted
            };
            own[starts[row]] = row as u32;
        }
    }
    for (lefts, rights) in &parts {
        for (&l, &r) in lefts.iter().zip(rights) {
            let slot = &mut starts[row_of((l, r))];
            lefts_sorted[*slot] = l;
            rights_sorted[*slot] = r;
            *slot += 1;
        }
    }
    let mut sorted: Vec<(Vec<u32>, Vec<u32>)> = lefts_sorted
        .chunks(MORSEL_ROWS)
        .zip(rights_sorted.chunks(MORSEL_ROWS))
        .map(|(l, r)| (l.to_vec(), r.to_vec()))
        .collect();
    if sorted.is_empty() {
        sorted.push((vec![], vec![]));
    }
    sorted
}

/// The types of `exprs` over `view`'s schema.
fn dense_types(view: &ViewSet, exprs: &[Expr]) -> Result<Vec<DataType>, ExecError> {
    exprs
        .iter()
        .map(|expr| Ok(relay_plan::resolve::resolve(expr.clone(), &view.schema)?.data_type))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int32Array, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Schema};
    use relay_plan::LogicalPlan;

    use std::hash::Hasher;

    use super::*;
    use crate::nodes::memory;

    #[test]
    fn a_large_build_side_is_partitioned_with_the_same_chains() {
        let rows = PARTITIONED_BUILD_ROWS + 1000;
        let key = |row: usize| (!row.is_multiple_of(97)).then_some((row % 50_000) as i64 * 3);
        let table = Table::build(rows, key);
        assert_eq!(table.heads.len(), BUILD_PARTITIONS);
        let mut expected: std::collections::HashMap<i64, Vec<u32>> =
            std::collections::HashMap::new();
        for row in 0..rows {
            if let Some(k) = key(row) {
                expected.entry(k).or_default().push(row as u32);
            }
        }
        for (k, rows) in &expected {
            assert_eq!(
                &table.chain(table.head(k)).collect::<Vec<_>>(),
                rows,
                "key {k}"
            );
        }
        assert_eq!(table.head(&1), NO_ROW);
        assert_eq!(
            table.heads.iter().map(|h| h.len()).sum::<usize>(),
            expected.len()
        );
    }

    /// A view of `batches` of (k int64, s utf8) rows.
    fn view(batches: &[Vec<(Option<i64>, &str)>]) -> ViewSet {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batches: Vec<RecordBatch> = batches
            .iter()
            .map(|rows| {
                let keys: Int64Array = rows.iter().map(|(k, _)| *k).collect();
                let strings: StringArray = rows.iter().map(|(_, s)| Some(*s)).collect();
                RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(strings)])
                    .unwrap()
            })
            .collect();
        memory(schema, &batches)
    }

    /// The join's rows as strings `"left s|right s"` ("-" for null), via the plan's columns.
    fn run(left: ViewSet, right: ViewSet, on: &[&str], how: JoinType) -> Vec<String> {
        let plan = |v: &ViewSet| {
            Arc::new(LogicalPlan::memory(
                v.schema.clone(),
                v.record_batches().unwrap(),
            ))
        };
        let keys: Vec<Expr> = on.iter().map(|&name| Expr::col(name)).collect();
        let node = plan(&left)
            .join(&plan(&right), keys.clone(), keys.clone(), how, "_r")
            .unwrap();
        let LogicalPlan::Join { columns, .. } = &node else {
            panic!()
        };
        let result = join(
            left,
            right,
            &keys,
            &keys,
            how,
            columns,
            node.schema().unwrap(),
        )
        .unwrap();
        let batches = crate::nodes::collect_batches(&result).unwrap();
        let mut rows = Vec::new();
        for batch in batches {
            let strings: Vec<&StringArray> = batch
                .columns()
                .iter()
                .filter(|c| c.data_type() == &DataType::Utf8)
                .map(|c| c.as_string::<i32>())
                .collect();
            for row in 0..batch.num_rows() {
                let cells: Vec<String> = strings
                    .iter()
                    .map(|s| {
                        if s.is_null(row) {
                            "-".into()
                        } else {
                            s.value(row).to_string()
                        }
                    })
                    .collect();
                rows.push(cells.join("|"));
            }
        }
        rows
    }

    fn sides() -> (ViewSet, ViewSet) {
        let left = view(&[
            vec![(Some(1), "a"), (Some(2), "b")],
            vec![(None, "c"), (Some(2), "d"), (Some(4), "e")],
        ]);
        let right = view(&[vec![
            (Some(2), "p"),
            (Some(3), "q"),
            (None, "r"),
            (Some(2), "s"),
        ]]);
        (left, right)
    }

    #[test]
    fn every_join_type_with_duplicates_on_both_sides_and_null_keys() {
        let (l, r) = sides();
        assert_eq!(
            run(l, r, &["k"], JoinType::Left),
            ["a|-", "b|p", "b|s", "c|-", "d|p", "d|s", "e|-"]
        );
        let (l, r) = sides();
        assert_eq!(
            run(l, r, &["k"], JoinType::Inner),
            ["b|p", "b|s", "d|p", "d|s"]
        );
        let (l, r) = sides();
        // A right join builds the left side and probes the right: rows in right order.
        assert_eq!(
            run(l, r, &["k"], JoinType::Right),
            ["b|p", "d|p", "-|q", "-|r", "b|s", "d|s"]
        );
        let (l, r) = sides();
        assert_eq!(
            run(l, r, &["k"], JoinType::Full),
            [
                "a|-", "b|p", "b|s", "c|-", "d|p", "d|s", "e|-", "-|q", "-|r"
            ]
        );
        let (l, r) = sides();
        assert_eq!(run(l, r, &["k"], JoinType::Semi), ["b", "d"]);
        let (l, r) = sides();
        assert_eq!(run(l, r, &["k"], JoinType::Anti), ["a", "c", "e"]);
        // Multi-column keys go through the row format.
        let (l, r) = sides();
        assert_eq!(
            run(l, r, &["k", "s"], JoinType::Inner),
            Vec::<String>::new()
        );
    }

    #[test]
    fn two_keys_join_the_same_packed_and_through_the_row_format() {
        // Short strings pack with the integer into a u128; strings over 7 bytes do not, and
        // the same rows go through the row format.
        for (a, b) in [("a", "b"), ("aaaaaaaaa", "bbbbbbbbbb")] {
            let left = view(&[
                vec![(Some(1), a), (Some(2), b)],
                vec![(None, a), (Some(2), b)],
            ]);
            let right = view(&[vec![(Some(2), b), (Some(1), a), (Some(1), b), (Some(2), b)]]);
            let packed = pack(
                &key_arrays(
                    &left,
                    &[Expr::col("k"), Expr::col("s")],
                    &[DataType::Int64, DataType::Utf8],
                )
                .unwrap(),
                Nulls::Ignored,
            );
            assert_eq!(packed.is_some(), a.len() <= 7);
            // The key columns are shared: each output row shows its `s` once.
            assert_eq!(
                run(left, right, &["k", "s"], JoinType::Inner),
                [a, b, b, b, b]
            );
            let left = view(&[
                vec![(Some(1), a), (None, a), (Some(3), b)],
                vec![(Some(1), b)],
            ]);
            let right = view(&[vec![(Some(1), a), (Some(1), b), (Some(1), b)]]);
            assert_eq!(
                run(left, right, &["k", "s"], JoinType::Left),
                [a, a, b, b, b]
            );
            let (left, right) = (
                view(&[vec![(Some(1), a), (None, a), (Some(3), b)]]),
                view(&[vec![(Some(1), a), (Some(1), b)]]),
            );
            assert_eq!(run(left, right, &["k", "s"], JoinType::Anti), [a, b]);
        }
    }

    #[test]
    fn key_bits_hold_exactly_the_build_keys() {
        let keys = [-5i64, 0, 63, 64, 1000, -5];
        let bits = KeyBits::of(keys.iter().copied()).unwrap();
        for k in -70..1100 {
            assert_eq!(bits.contains(k), keys.contains(&k), "{k}");
        }
        assert!(!bits.contains(i64::MIN) && !bits.contains(i64::MAX));
        // Too wide a range, or no keys: no bitmap, every key may match.
        assert!(KeyBits::of([i64::MIN, i64::MAX].into_iter()).is_none());
        assert!(KeyBits::of([0, 1 << 26].into_iter()).is_none());
        assert!(KeyBits::of(std::iter::empty()).is_none());
        let edge = KeyBits::of([i64::MAX - 3, i64::MAX].into_iter()).unwrap();
        assert!(
            edge.contains(i64::MAX) && edge.contains(i64::MAX - 3) && !edge.contains(i64::MAX - 1)
        );
    }

    #[test]
    fn empty_inputs_and_a_larger_right_side() {
        let (l, _) = sides();
        assert_eq!(
            run(l, view(&[]), &["k"], JoinType::Left),
            ["a|-", "b|-", "c|-", "d|-", "e|-"]
        );
        let (_, r) = sides();
        assert!(run(view(&[]), r, &["k"], JoinType::Inner).is_empty());
        let (_, r) = sides();
        assert_eq!(
            run(view(&[]), r, &["k"], JoinType::Full),
            ["-|p", "-|q", "-|r", "-|s"]
        );
        // Left smaller than right: the left side is built, and the pairs put in left order.
        let (_, r) = sides();
        let small = view(&[vec![(Some(2), "x"), (Some(3), "y")], vec![(Some(2), "z")]]);
        assert_eq!(
            run(small, r, &["k"], JoinType::Inner),
            ["x|p", "x|s", "y|q", "z|p", "z|s"]
        );
    }

    #[test]
    fn integer_keys_of_different_widths_join_and_the_hasher_spreads_keys() {
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int32, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int32Array::from(vec![Some(2), None, Some(7)]))],
        )
        .unwrap();
        let narrow = memory(schema, &[batch]);
        let (_, right) = sides();
        let types = [join_key_type(&DataType::Int32, &DataType::Int64).unwrap()];
        let keys = [Expr::col("k")];
        let (l, r) = side_keys(
            key_arrays(&narrow, &keys, &types).unwrap(),
            key_arrays(&right, &keys, &types).unwrap(),
        )
        .unwrap();
        let pairs = probe_all(&r, 4, &l, 3, false, None);
        assert_eq!(pairs[0].probe, [0, 0]);
        assert_eq!(pairs[0].build, [0, 3]);
        let hash = |v: i64| {
            let mut h = crate::keys::KeyHasher::default();
            h.write_i64(v);
            h.finish()
        };
        assert_ne!(hash(1) & 0xff, hash(2) & 0xff);
    }
}
