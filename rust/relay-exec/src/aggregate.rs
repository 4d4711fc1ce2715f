//! `Aggregate` (`group_by(keys).agg([...])`, or `agg([...])` without keys): parallel partial
//! aggregation with a merge, into new memory.
//!
//! 1. The input's selected rows are cut into morsels of at most `MORSEL_ROWS` rows, and the
//!    morsels into a few contiguous runs, one rayon task each. A task evaluates the keys and
//!    the aggregations' inputs one morsel at a time (nothing the size of the input is
//!    materialized) and folds them into a `Partial`: its own hash table of groups, numbered
//!    in order of first appearance, the key values of each group's first row, and one
//!    accumulator per aggregation.
//! 2. Keys: a single integer or date key is hashed as an `i64`; up to two integer-like or
//!    short string keys are packed into one `u128` (`crate::keys`; a null string packs to a
//!    word of its own); other keys are encoded in arrow-rs's row format (every key column of
//!    a row as one byte string, equal exactly when the keys are, nulls equal to each other as
//!    in Polars). A run whose keys stop packing (a string over 7 bytes, a null integer)
//!    re-encodes the groups it has in the row format and goes on there; before the merge,
//!    the other runs do the same.
//!    A morsel whose selection keeps at least 3/4 of its span is evaluated over the span and
//!    its selected rows picked where they are added up (`Plan::run`), rather than every
//!    column gathered first; inputs that recur inside later inputs are evaluated once per
//!    morsel (`share_inputs`).
//! 3. The partials merge in run order, so the groups of the result keep the order of their
//!    first row in the input. With many groups (at least `PARALLEL_MERGE_GROUPS`, over
//!    integer or packed keys) the key tables merge in parallel by hash partition
//!    (`merge_wide`), with the same numbering. Accumulators merge per group: sums and counts add, spreads
//!    combine by Chan's formula, min / max / first / last keep one candidate value per group
//!    and morsel (taken out of the morsel, so morsels are dropped as they are done) and choose
//!    among them at the end with arrow-rs's comparator (so they keep the input type: strings
//!    and dates included), medians and quantiles collect the values and select per group.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, UInt32Array, UInt64Array,
    make_comparator, new_empty_array, new_null_array,
};
use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::compute::{SortOptions, cast, concat, take};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Decimal128Type, Field, Float64Type, Int64Type, Schema, SchemaRef,
    UInt64Type,
};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rayon::prelude::*;
use relay_plan::{AggExpr, AggFunc, Expr, Interpolation, Quantile};
use rustc_hash::FxHashMap;

use crate::eval::evaluate;
use crate::execute::{Chunk, ExecError, MORSEL_ROWS, ViewSet, batch_of, pool};
use crate::keys::{KeyHasher, KeyMap, Nulls, pack, packable};

/// Rows of one chunk that one task evaluates together.
struct Morsel<'a> {
    chunk: &'a Chunk,
    /// Offsets into the chunk's columns, when the chunk has a selection.
    rows: Option<&'a [u32]>,
    /// Consecutive rows `start .. start + len`, when it has none.
    range: (usize, usize),
}

impl Morsel<'_> {
    fn len(&self) -> usize {
        self.rows.map_or(self.range.1, <[u32]>::len)
    }
}

fn morsels(input: &ViewSet) -> Vec<Morsel<'_>> {
    let mut morsels = Vec::new();
    for chunk in &input.chunks {
        match &chunk.selection {
            Some(selection) => morsels.extend(selection.chunks(MORSEL_ROWS).map(|rows| Morsel {
                chunk,
                rows: Some(rows),
                range: (0, 0),
            })),
            None => morsels.extend((0..chunk.len).step_by(MORSEL_ROWS).map(|start| Morsel {
                chunk,
                rows: None,
                range: (start, MORSEL_ROWS.min(chunk.len - start)),
            })),
        }
    }
    morsels
}

/// What `KeyTable::assign` gives for a morsel: each row's group id, and the rows that
/// started a new group.
type Assigned = (Vec<u32>, Vec<u32>);

/// The groups a task has seen: a hash table from key to group id, ids in order of first
/// appearance.
enum KeyTable {
    /// No keys: every row is in group 0, which exists even when there are no rows.
    Single,
    /// One integer-like key, as an i64 (a uint64 by its bits); null is a key of its own.
    Integer {
        ids: IntegerIds,
        null: Option<u32>,
        keys: Vec<Option<i64>>,
    },
    /// Up to two integer-like or short string keys packed into a `u128` (`crate::keys`);
    /// `keys[id]` is group `id`'s. A morsel whose keys do not pack turns the table into
    /// `Encoded` (`KeyTable::encoded`).
    Packed {
        ids: KeyMap<u128, u32>,
        keys: Vec<u128>,
    },
    /// Keys in the row format.
    Encoded(EncodedKeys),
}

/// Group keys in arrow-rs's row format, one after another in one buffer (a group costs no
/// allocation of its own), with a hash table of group ids that compares and rehashes through
/// them.
struct EncodedKeys {
    ids: HashTable<u32>,
    /// Every group's row, in id order; group `id`'s is `bytes[starts[id]..starts[id + 1]]`.
    bytes: Vec<u8>,
    starts: Vec<usize>,
    /// Each group's hash.
    hashes: Vec<u64>,
}

impl EncodedKeys {
    fn new() -> Self {
        EncodedKeys {
            ids: HashTable::new(),
            bytes: Vec::new(),
            starts: vec![0],
            hashes: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.hashes.len()
    }

    fn row(&self, id: usize) -> &[u8] {
        &self.bytes[self.starts[id]..self.starts[id + 1]]
    }

    fn hash(row: &[u8]) -> u64 {
        let mut hasher = KeyHasher::default();
        hasher.write(row);
        hasher.finish()
    }

    /// The group id of `row` (whose hash is `hash`), and whether the group is new.
    fn get_or_insert(&mut self, row: &[u8], hash: u64) -> (u32, bool) {
        let EncodedKeys {
            ids,
            bytes,
            starts,
            hashes,
        } = self;
        let found = ids.entry(
            hash,
            |&id| {
                hashes[id as usize] == hash
                    && &bytes[starts[id as usize]..starts[id as usize + 1]] == row
            },
            |&id| hashes[id as usize],
        );
        match found {
            Entry::Occupied(entry) => (*entry.get(), false),
            Entry::Vacant(entry) => {
                let id = hashes.len() as u32;
                entry.insert(id);
                bytes.extend_from_slice(row);
                starts.push(bytes.len());
                hashes.push(hash);
                (id, true)
            }
        }
    }

    fn reserve(&mut self, groups: usize) {
        let hashes = &self.hashes;
        self.ids.reserve(groups, |&id| hashes[id as usize]);
    }
}

/// The group ids of integer keys: an array indexed by `key - min` while the keys seen span a
/// range not much wider than their number (ids, dates, a column the file is sorted or
/// clustered by), else a hash table, which costs more per row (TPC-H Q18's 1.5 M order keys
/// of lineitem are such a range).
enum IntegerIds {
    Hashed(FxHashMap<i64, u32>),
    /// `slots[key - min]` is the key's group id plus one, or 0 for a key not seen yet. The
    /// array grows (doubling) to take keys outside it while it stays within `limit` slots and
    /// `DIRECT_SLOTS_PER_GROUP` slots per group (a few keys far apart are hashed).
    Direct {
        min: i64,
        slots: Vec<u32>,
        limit: u64,
    },
}

/// How many slots per input row an `IntegerIds::Direct` may have.
const DIRECT_SLOTS_PER_ROW: u64 = 4;
/// How many slots per group an `IntegerIds::Direct` wider than `DIRECT_SLOTS_ANYWAY` may have:
/// TPC-H's order keys use one value in four.
const DIRECT_SLOTS_PER_GROUP: u64 = 16;
/// How many slots (256 KiB) an `IntegerIds::Direct` may have whatever its keys.
const DIRECT_SLOTS_ANYWAY: u64 = 1 << 16;

impl IntegerIds {
    /// An empty table for the keys of `rows` rows.
    fn new(rows: usize) -> Self {
        IntegerIds::Direct {
            min: 0,
            slots: Vec::new(),
            limit: (rows as u64 * DIRECT_SLOTS_PER_ROW).max(DIRECT_SLOTS_ANYWAY),
        }
    }

    /// The group id of `key`, `next` if it is new (and then recorded). `keys` are the groups'
    /// keys so far, in id order, for a direct table that turns into a hash table.
    #[inline]
    fn get_or_insert(&mut self, key: i64, next: u32, keys: &[Option<i64>]) -> u32 {
        if let IntegerIds::Direct { min, slots, .. } = self {
            if let Some(slot) = slots.get_mut(key.wrapping_sub(*min) as u64 as usize) {
                if *slot == 0 {
                    *slot = next + 1;
                }
                return *slot - 1;
            }
            self.grow(key, keys);
        }
        match self {
            IntegerIds::Hashed(ids) => *ids.entry(key).or_insert(next),
            direct => direct.get_or_insert(key, next, keys),
        }
    }

    /// Makes room in a direct table for `key`, or turns it into a hash table holding `keys`.
    #[cold]
    fn grow(&mut self, key: i64, keys: &[Option<i64>]) {
        let IntegerIds::Direct { min, slots, limit } = self else {
            return;
        };
        let (key, old_min, old_len) = (i128::from(key), i128::from(*min), slots.len() as i128);
        let (low, high) = if slots.is_empty() {
            (key, key)
        } else {
            (old_min.min(key), (old_min + old_len - 1).max(key))
        };
        let span = (high - low + 1) as u64;
        let groups = keys.len() as u64 + 1;
        if span > *limit || (span > DIRECT_SLOTS_ANYWAY && span > groups * DIRECT_SLOTS_PER_GROUP) {
            let mut ids = FxHashMap::with_capacity_and_hasher(keys.len(), Default::default());
            for (id, key) in keys.iter().enumerate() {
                if let Some(key) = key {
                    ids.insert(*key, id as u32);
                }
            }
            *self = IntegerIds::Hashed(ids);
            return;
        }
        // Room to spare on the side the key came from, so a run of rising (or falling) keys
        // copies the array a logarithmic number of times.
        let size = span.max(2 * old_len as u64).min(*limit) as i128;
        let new_min = if !slots.is_empty() && key < old_min {
            (high - size + 1).max(i128::from(i64::MIN))
        } else {
            low
        };
        let mut grown = vec![0u32; size as usize];
        if !slots.is_empty() {
            let offset = (old_min - new_min) as usize;
            grown[offset..offset + slots.len()].copy_from_slice(slots);
        }
        *min = new_min as i64;
        *slots = grown;
    }

    /// Lets a direct table grow to `limit` slots.
    fn widen(&mut self, rows: usize) {
        if let IntegerIds::Direct { limit, .. } = self {
            *limit = (*limit).max(rows as u64 * DIRECT_SLOTS_PER_ROW);
        }
    }
}

/// Whether a single key of type `t` is grouped as an i64.
fn integer_key(t: &DataType) -> bool {
    t.is_integer()
        || matches!(
            t,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Duration(_)
        )
}

fn as_i64(key: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match key.data_type() {
        DataType::Int64 => Ok(key.clone()),
        // Bits, not values: every uint64 has a distinct i64.
        DataType::UInt64 => Ok(Arc::new(
            key.as_primitive::<UInt64Type>()
                .unary::<_, Int64Type>(|v| v as i64),
        )),
        t if t.is_integer() => cast(key, &DataType::Int64),
        DataType::Date32 => cast(&cast(key, &DataType::Int32)?, &DataType::Int64),
        // 64-bit dates, timestamps and durations: the same bits as int64.
        _ => Ok(Arc::new(Int64Array::from(
            key.to_data()
                .into_builder()
                .data_type(DataType::Int64)
                .build()?,
        ))),
    }
}

impl KeyTable {
    /// An empty table for keys of types `keys` in `rows` rows.
    fn new(keys: &[DataType], rows: usize) -> Self {
        match keys {
            [] => KeyTable::Single,
            [t] if integer_key(t) => KeyTable::Integer {
                ids: IntegerIds::new(rows),
                null: None,
                keys: Vec::new(),
            },
            _ if keys.len() <= 2 && keys.iter().all(packable) => KeyTable::Packed {
                ids: KeyMap::default(),
                keys: Vec::new(),
            },
            _ => KeyTable::Encoded(EncodedKeys::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            KeyTable::Single => 1,
            KeyTable::Integer { keys, .. } => keys.len(),
            KeyTable::Packed { keys, .. } => keys.len(),
            KeyTable::Encoded(keys) => keys.len(),
        }
    }

    /// The `Encoded` table of the groups whose keys are `key_parts` (per key expression, the
    /// key values of every group in group order, in parts), numbered as they are there.
    fn encoded(key_parts: &[Vec<ArrayRef>], converter: &RowConverter) -> Result<Self, ArrowError> {
        // No groups yet: no parts to concatenate.
        let mut keys = EncodedKeys::new();
        if key_parts.iter().any(Vec::is_empty) {
            return Ok(KeyTable::Encoded(keys));
        }
        let columns = key_parts
            .iter()
            .map(|parts| {
                let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                concat(&parts)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !columns.is_empty() {
            for row in converter.convert_columns(&columns)?.iter() {
                keys.get_or_insert(row.data(), EncodedKeys::hash(row.data()));
            }
        }
        Ok(KeyTable::Encoded(keys))
    }

    /// The group id of each of the `len` rows of `keys`, new groups added; also the rows that
    /// started a new group, in order. None (and nothing added) when a `Packed` table meets
    /// keys that do not pack.
    fn assign(
        &mut self,
        keys: &[ArrayRef],
        converter: Option<&RowConverter>,
        len: usize,
    ) -> Result<Option<Assigned>, ArrowError> {
        let mut new_rows = Vec::new();
        let ids = match self {
            KeyTable::Single => vec![0; len],
            KeyTable::Integer {
                ids,
                null,
                keys: all,
            } => {
                let values = as_i64(&keys[0])?;
                let values = values.as_primitive::<Int64Type>();
                let mut out = Vec::with_capacity(len);
                // The previous row's key and group: rows of one key often come together (a
                // file sorted or clustered by it, as lineitem by l_orderkey in TPC-H Q18,
                // four rows per key), and a compare is cheaper than a lookup.
                let mut previous: Option<(i64, u32)> = None;
                for row in 0..len {
                    let id = if values.is_valid(row) {
                        let value = values.value(row);
                        match previous {
                            Some((key, id)) if key == value => id,
                            _ => {
                                let next = all.len() as u32;
                                let id = ids.get_or_insert(value, next, all);
                                if id == next {
                                    all.push(Some(value));
                                    new_rows.push(row as u32);
                                }
                                previous = Some((value, id));
                                id
                            }
                        }
                    } else {
                        *null.get_or_insert_with(|| {
                            all.push(None);
                            new_rows.push(row as u32);
                            all.len() as u32 - 1
                        })
                    };
                    out.push(id);
                }
                out
            }
            KeyTable::Packed { ids, keys: all } => {
                let Some(packed) = pack(keys, Nulls::Distinct) else {
                    return Ok(None);
                };
                let (out, new) = assign_packed(
                    ids,
                    all,
                    packed
                        .into_iter()
                        .enumerate()
                        .map(|(row, value)| (row as u32, value)),
                    len,
                );
                new_rows = new;
                out
            }
            KeyTable::Encoded(table) => {
                let converter = converter.expect("encoded keys have a converter");
                let rows = converter.convert_columns(keys)?;
                let mut out = Vec::with_capacity(len);
                for (row, encoded) in rows.iter().enumerate() {
                    let bytes = encoded.data();
                    let (id, new) = table.get_or_insert(bytes, EncodedKeys::hash(bytes));
                    if new {
                        new_rows.push(row as u32);
                    }
                    out.push(id);
                }
                out
            }
        };
        Ok(Some((ids, new_rows)))
    }

    /// `assign` for a `Packed` table and the rows `picked` of `keys`: the group id of each
    /// picked row, and the rows (of `keys`, not of `picked`) that started a new group. None
    /// (and nothing added) for other tables, or keys that do not pack.
    fn assign_packed_at(&mut self, keys: &[ArrayRef], picked: &[u32]) -> Option<Assigned> {
        let KeyTable::Packed { ids, keys: all } = self else {
            return None;
        };
        let packed = pack(keys, Nulls::Distinct)?;
        Some(assign_packed(
            ids,
            all,
            picked.iter().map(|&row| (row, packed[row as usize])),
            picked.len(),
        ))
    }

    /// Folds `other`'s groups into this table: the id here of each of `other`'s groups, and
    /// which of `other`'s groups are new here, in order.
    fn merge(&mut self, other: KeyTable) -> (Vec<u32>, Vec<u32>) {
        let mut new_groups = Vec::new();
        // Room for every group of `other` at once: with many groups (Q18's 1.5 M order keys,
        // disjoint between runs) the table otherwise rehashes as it doubles.
        match self {
            KeyTable::Integer {
                ids: IntegerIds::Hashed(ids),
                ..
            } => ids.reserve(other.len()),
            KeyTable::Integer { .. } => {}
            KeyTable::Packed { ids, .. } => ids.reserve(other.len()),
            KeyTable::Encoded(keys) => keys.reserve(other.len()),
            KeyTable::Single => {}
        }
        let mapping = match (self, other) {
            (KeyTable::Single, KeyTable::Single) => vec![0],
            (
                KeyTable::Integer {
                    ids,
                    null,
                    keys: all,
                },
                KeyTable::Integer { keys: theirs, .. },
            ) => theirs
                .into_iter()
                .enumerate()
                .map(|(local, key)| {
                    let next = all.len() as u32;
                    let id = match key {
                        Some(value) => ids.get_or_insert(value, next, all),
                        None => *null.get_or_insert(next),
                    };
                    if id == next {
                        all.push(key);
                        new_groups.push(local as u32);
                    }
                    id
                })
                .collect(),
            (KeyTable::Packed { ids, keys: all }, KeyTable::Packed { keys: theirs, .. }) => theirs
                .into_iter()
                .enumerate()
                .map(|(local, key)| {
                    let next = all.len() as u32;
                    let slot = ids.entry(key).or_insert(next);
                    if *slot == next {
                        all.push(key);
                        new_groups.push(local as u32);
                    }
                    *slot
                })
                .collect(),
            (KeyTable::Encoded(mine), KeyTable::Encoded(theirs)) => (0..theirs.len())
                .map(|local| {
                    let (id, new) = mine.get_or_insert(theirs.row(local), theirs.hashes[local]);
                    if new {
                        new_groups.push(local as u32);
                    }
                    id
                })
                .collect(),
            _ => {
                unreachable!("partials are brought to the same kind of key table before they merge")
            }
        };
        (mapping, new_groups)
    }
}

/// The group id of each of `rows` ((row, packed key) pairs, `len` of them) in `ids`, new
/// groups added to it and their keys to `keys`; also the rows that started a new group.
fn assign_packed(
    ids: &mut KeyMap<u128, u32>,
    keys: &mut Vec<u128>,
    rows: impl Iterator<Item = (u32, u128)>,
    len: usize,
) -> Assigned {
    let mut out = Vec::with_capacity(len);
    let mut new_rows = Vec::new();
    // As for integer keys: a run of one key costs one lookup.
    let mut previous: Option<(u128, u32)> = None;
    for (row, value) in rows {
        let id = match previous {
            Some((key, id)) if key == value => id,
            _ => {
                let next = keys.len() as u32;
                let id = *ids.entry(value).or_insert_with(|| {
                    keys.push(value);
                    new_rows.push(row);
                    next
                });
                previous = Some((value, id));
                id
            }
        };
        out.push(id);
    }
    (out, new_rows)
}

/// What an aggregation keeps per group while rows stream by.
enum Accumulator {
    /// `count` (non-null values) or `len` (rows).
    Count {
        counts: Vec<u64>,
        rows: bool,
    },
    SumInt(Vec<i64>),
    SumUInt(Vec<u64>),
    SumFloat(Vec<f64>),
    SumDecimal {
        sums: Vec<i128>,
        precision: u8,
        scale: i8,
    },
    Mean {
        sums: Vec<f64>,
        counts: Vec<u64>,
    },
    /// Mean of decimals: exact sums, divided at the end.
    MeanDecimal {
        sums: Vec<i128>,
        counts: Vec<u64>,
        scale: i8,
    },
    /// Count, mean and sum of squared deviations (Welford), for std and var.
    Moments {
        moments: Vec<(u64, f64, f64)>,
        std: bool,
    },
    /// Min, max, first or last: per morsel, each group's candidate row taken out as a value.
    Pick {
        func: AggFunc,
        candidates: Vec<ArrayRef>,
        groups: Vec<u32>,
        best: Vec<u32>,
        touched: Vec<u32>,
    },
    /// Median or quantile: every non-null value with its group.
    Collect {
        values: Vec<f64>,
        groups: Vec<u32>,
        quantile: Quantile,
    },
    /// n_unique: the distinct (group, value) pairs, values in the row format.
    Distinct {
        seen: HashSet<(u32, Box<[u8]>)>,
        converter: RowConverter,
    },
}

const NO_ROW: u32 = u32::MAX;

impl Accumulator {
    fn new(func: AggFunc, input: &DataType, output: &DataType) -> Result<Self, ArrowError> {
        Ok(match func {
            AggFunc::Count | AggFunc::Len => Accumulator::Count {
                counts: Vec::new(),
                rows: func == AggFunc::Len,
            },
            AggFunc::Sum => match output {
                DataType::Int64 => Accumulator::SumInt(Vec::new()),
                DataType::UInt64 => Accumulator::SumUInt(Vec::new()),
                DataType::Decimal128(precision, scale) => Accumulator::SumDecimal {
                    sums: Vec::new(),
                    precision: *precision,
                    scale: *scale,
                },
                _ => Accumulator::SumFloat(Vec::new()),
            },
            AggFunc::Mean => match input {
                DataType::Decimal128(_, scale) => Accumulator::MeanDecimal {
                    sums: Vec::new(),
                    counts: Vec::new(),
                    scale: *scale,
                },
                _ => Accumulator::Mean {
                    sums: Vec::new(),
                    counts: Vec::new(),
                },
            },
            AggFunc::Std | AggFunc::Var => Accumulator::Moments {
                moments: Vec::new(),
                std: func == AggFunc::Std,
            },
            AggFunc::Min | AggFunc::Max | AggFunc::First | AggFunc::Last => Accumulator::Pick {
                func,
                candidates: Vec::new(),
                groups: Vec::new(),
                best: Vec::new(),
                touched: Vec::new(),
            },
            AggFunc::Median | AggFunc::Quantile(_) => Accumulator::Collect {
                values: Vec::new(),
                groups: Vec::new(),
                quantile: match func {
                    AggFunc::Quantile(quantile) => quantile,
                    _ => Quantile::new(0.5, Interpolation::Linear).expect("0.5 is in [0, 1]"),
                },
            },
            AggFunc::NUnique => Accumulator::Distinct {
                seen: HashSet::new(),
                converter: RowConverter::new(vec![SortField::new(input.clone())])?,
            },
        })
    }

    /// Adds the rows of one morsel: value `picked[i]` of `values` (value `i` when there is no
    /// `picked`) belongs to group `ids[i]`; there are `groups` groups so far. Row counts and
    /// decimal sums read the picked values where they are; the others take them out first.
    fn update_at(
        &mut self,
        values: &ArrayRef,
        picked: Option<&[u32]>,
        ids: &[u32],
        groups: usize,
    ) -> Result<(), ArrowError> {
        let Some(picked) = picked else {
            return self.update(values, ids, groups);
        };
        match self {
            Accumulator::Count { counts, rows: true } => {
                if counts.len() < groups {
                    counts.resize(groups, 0);
                }
                ids.iter().for_each(|&g| counts[g as usize] += 1);
            }
            Accumulator::SumDecimal {
                sums,
                precision,
                scale,
            } if matches!(values.data_type(), DataType::Decimal128(_, s) if s == scale) => {
                if sums.len() < groups {
                    sums.resize(groups, 0);
                }
                add_decimals(sums, values, Some(picked), ids, *precision, *scale)?;
            }
            Accumulator::MeanDecimal {
                sums,
                counts,
                scale,
            } if matches!(values.data_type(), DataType::Decimal128(_, s) if s == scale) => {
                if sums.len() < groups {
                    sums.resize(groups, 0);
                    counts.resize(groups, 0);
                }
                add_decimals(sums, values, Some(picked), ids, 38, *scale)?;
                match values.logical_nulls() {
                    Some(nulls) => picked
                        .iter()
                        .zip(ids)
                        .filter(|(row, _)| nulls.is_valid(**row as usize))
                        .for_each(|(_, &g)| counts[g as usize] += 1),
                    None => ids.iter().for_each(|&g| counts[g as usize] += 1),
                }
            }
            _ => {
                return self.update(
                    &take(values.as_ref(), &UInt32Array::from(picked.to_vec()), None)?,
                    ids,
                    groups,
                );
            }
        }
        Ok(())
    }

    /// Adds the rows of one morsel: `values[i]` belongs to group `ids[i]`; there are `groups`
    /// groups so far.
    fn update(&mut self, values: &ArrayRef, ids: &[u32], groups: usize) -> Result<(), ArrowError> {
        fn grow<T: Clone>(v: &mut Vec<T>, len: usize, zero: T) {
            if v.len() < len {
                v.resize(len, zero);
            }
        }
        match self {
            Accumulator::Count { counts, rows } => {
                grow(counts, groups, 0);
                match values.logical_nulls().filter(|_| !*rows) {
                    Some(nulls) => ids
                        .iter()
                        .zip(nulls.iter())
                        .filter(|(_, valid)| *valid)
                        .for_each(|(&g, _)| counts[g as usize] += 1),
                    None => ids.iter().for_each(|&g| counts[g as usize] += 1),
                }
            }
            Accumulator::SumInt(sums) => {
                grow(sums, groups, 0);
                add_per_group::<Int64Type>(sums, values, ids, i64::wrapping_add)?;
            }
            Accumulator::SumUInt(sums) => {
                grow(sums, groups, 0);
                add_per_group::<UInt64Type>(sums, values, ids, u64::wrapping_add)?;
            }
            Accumulator::SumFloat(sums) => {
                grow(sums, groups, 0.0);
                add_per_group::<Float64Type>(sums, values, ids, |a, b| a + b)?;
            }
            Accumulator::SumDecimal {
                sums,
                precision,
                scale,
            } => {
                grow(sums, groups, 0);
                add_decimals(sums, values, None, ids, *precision, *scale)?;
            }
            Accumulator::Mean { sums, counts } => {
                grow(sums, groups, 0.0);
                grow(counts, groups, 0);
                let values = cast(values, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                for (row, &g) in ids.iter().enumerate() {
                    if values.is_valid(row) {
                        sums[g as usize] += values.value(row);
                        counts[g as usize] += 1;
                    }
                }
            }
            Accumulator::MeanDecimal {
                sums,
                counts,
                scale,
            } => {
                grow(sums, groups, 0);
                grow(counts, groups, 0);
                add_decimals(sums, values, None, ids, 38, *scale)?;
                if let Some(nulls) = values.logical_nulls() {
                    ids.iter()
                        .zip(nulls.iter())
                        .filter(|(_, valid)| *valid)
                        .for_each(|(&g, _)| counts[g as usize] += 1);
                } else {
                    ids.iter().for_each(|&g| counts[g as usize] += 1);
                }
            }
            Accumulator::Moments { moments, .. } => {
                grow(moments, groups, (0, 0.0, 0.0));
                let values = cast(values, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                for (row, &g) in ids.iter().enumerate() {
                    if values.is_valid(row) {
                        let (n, mean, m2) = &mut moments[g as usize];
                        *n += 1;
                        let delta = values.value(row) - *mean;
                        *mean += delta / *n as f64;
                        *m2 += delta * (values.value(row) - *mean);
                    }
                }
            }
            Accumulator::Pick {
                func,
                candidates,
                groups: candidate_groups,
                best,
                touched,
            } => {
                grow(best, groups, NO_ROW);
                let compare = matches!(func, AggFunc::Min | AggFunc::Max)
                    .then(|| {
                        make_comparator(values.as_ref(), values.as_ref(), SortOptions::default())
                    })
                    .transpose()?;
                for (row, &g) in ids.iter().enumerate() {
                    let slot = &mut best[g as usize];
                    let row = row as u32;
                    let take_it = match func {
                        AggFunc::First => *slot == NO_ROW,
                        AggFunc::Last => true,
                        _ => {
                            values.is_valid(row as usize)
                                && (*slot == NO_ROW || {
                                    let order =
                                        compare.as_ref().expect("min and max have a comparator")(
                                            row as usize,
                                            *slot as usize,
                                        );
                                    if *func == AggFunc::Min {
                                        order.is_lt()
                                    } else {
                                        order.is_gt()
                                    }
                                })
                        }
                    };
                    if take_it {
                        if *slot == NO_ROW {
                            touched.push(g);
                        }
                        *slot = row;
                    }
                }
                // Each group this morsel touched: its candidate row, and its slot reset.
                let rows: Vec<u32> = touched
                    .iter()
                    .map(|&g| std::mem::replace(&mut best[g as usize], NO_ROW))
                    .collect();
                candidates.push(take(values.as_ref(), &UInt32Array::from(rows), None)?);
                candidate_groups.append(touched);
            }
            Accumulator::Collect {
                values: collected,
                groups: collected_groups,
                ..
            } => {
                let values = cast(values, &DataType::Float64)?;
                let values = values.as_primitive::<Float64Type>();
                for (row, &g) in ids.iter().enumerate() {
                    if values.is_valid(row) {
                        collected.push(values.value(row));
                        collected_groups.push(g);
                    }
                }
            }
            Accumulator::Distinct { seen, converter } => {
                let encoded = converter.convert_columns(std::slice::from_ref(values))?;
                for (row, &g) in encoded.iter().zip(ids) {
                    seen.insert((g, row.data().into()));
                }
            }
        }
        Ok(())
    }

    /// Folds `other` (of a later run) into this accumulator; `mapping[g]` is the id here of
    /// `other`'s group `g`, and there are `groups` groups here after the merge.
    fn merge(
        &mut self,
        other: Accumulator,
        mapping: &[u32],
        groups: usize,
    ) -> Result<(), ArrowError> {
        fn add<T: Copy + Default>(
            mine: &mut Vec<T>,
            theirs: Vec<T>,
            mapping: &[u32],
            groups: usize,
            plus: impl Fn(T, T) -> T,
        ) {
            mine.resize(groups.max(mine.len()), T::default());
            for (g, value) in theirs.into_iter().enumerate() {
                let slot = &mut mine[mapping[g] as usize];
                *slot = plus(*slot, value);
            }
        }
        match (self, other) {
            (Accumulator::Count { counts, .. }, Accumulator::Count { counts: theirs, .. }) => {
                add(counts, theirs, mapping, groups, |a, b| a + b)
            }
            (Accumulator::SumInt(sums), Accumulator::SumInt(theirs)) => {
                add(sums, theirs, mapping, groups, i64::wrapping_add)
            }
            (Accumulator::SumUInt(sums), Accumulator::SumUInt(theirs)) => {
                add(sums, theirs, mapping, groups, u64::wrapping_add)
            }
            (Accumulator::SumFloat(sums), Accumulator::SumFloat(theirs)) => {
                add(sums, theirs, mapping, groups, |a, b| a + b)
            }
            (
                Accumulator::SumDecimal {
                    sums,
                    precision,
                    scale,
                },
                Accumulator::SumDecimal { sums: theirs, .. },
            ) => {
                sums.resize(groups.max(sums.len()), 0);
                for (g, value) in theirs.into_iter().enumerate() {
                    let slot = &mut sums[mapping[g] as usize];
                    *slot = slot
                        .checked_add(value)
                        .ok_or_else(|| decimal_overflow(*precision, *scale))?;
                }
            }
            (Accumulator::Mean { sums, counts }, Accumulator::Mean { sums: s, counts: c }) => {
                add(sums, s, mapping, groups, |a, b| a + b);
                add(counts, c, mapping, groups, |a, b| a + b);
            }
            (
                Accumulator::MeanDecimal { sums, counts, .. },
                Accumulator::MeanDecimal {
                    sums: s, counts: c, ..
                },
            ) => {
                sums.resize(groups.max(sums.len()), 0);
                for (g, value) in s.into_iter().enumerate() {
                    let slot = &mut sums[mapping[g] as usize];
                    *slot = slot
                        .checked_add(value)
                        .ok_or_else(|| decimal_overflow(38, 0))?;
                }
                add(counts, c, mapping, groups, |a, b| a + b);
            }
            (
                Accumulator::Moments { moments, .. },
                Accumulator::Moments {
                    moments: theirs, ..
                },
            ) => {
                // Chan et al.'s pairwise combination of (count, mean, M2).
                add(
                    moments,
                    theirs,
                    mapping,
                    groups,
                    |(na, ma, m2a), (nb, mb, m2b)| {
                        if na == 0 {
                            return (nb, mb, m2b);
                        }
                        if nb == 0 {
                            return (na, ma, m2a);
                        }
                        let n = na + nb;
                        let delta = mb - ma;
                        (
                            n,
                            ma + delta * nb as f64 / n as f64,
                            m2a + m2b + delta * delta * (na as f64 * nb as f64 / n as f64),
                        )
                    },
                );
            }
            (
                Accumulator::Pick {
                    candidates,
                    groups: ids,
                    best,
                    ..
                },
                Accumulator::Pick {
                    candidates: c,
                    groups: g,
                    ..
                },
            ) => {
                best.resize(groups.max(best.len()), NO_ROW);
                candidates.extend(c);
                ids.extend(g.into_iter().map(|g| mapping[g as usize]));
            }
            (
                Accumulator::Collect {
                    values,
                    groups: ids,
                    ..
                },
                Accumulator::Collect {
                    values: v,
                    groups: g,
                    ..
                },
            ) => {
                values.extend(v);
                ids.extend(g.into_iter().map(|g| mapping[g as usize]));
            }
            (Accumulator::Distinct { seen, .. }, Accumulator::Distinct { seen: theirs, .. }) => {
                seen.extend(
                    theirs
                        .into_iter()
                        .map(|(g, value)| (mapping[g as usize], value)),
                );
            }
            _ => unreachable!("every task builds the same accumulators"),
        }
        Ok(())
    }

    /// One value per group, `groups` groups.
    fn finish(self, groups: usize, output: &DataType) -> Result<ArrayRef, ArrowError> {
        fn sized<T: Clone>(mut v: Vec<T>, groups: usize, zero: T) -> Vec<T> {
            v.resize(groups, zero);
            v
        }
        Ok(match self {
            Accumulator::Count { counts, .. } => {
                Arc::new(UInt64Array::from(sized(counts, groups, 0)))
            }
            Accumulator::SumInt(sums) => Arc::new(Int64Array::from(sized(sums, groups, 0))),
            Accumulator::SumUInt(sums) => Arc::new(UInt64Array::from(sized(sums, groups, 0))),
            Accumulator::SumFloat(sums) => Arc::new(Float64Array::from(sized(sums, groups, 0.0))),
            Accumulator::SumDecimal {
                sums,
                precision,
                scale,
            } => Arc::new(
                Decimal128Array::from(sized(sums, groups, 0))
                    .with_precision_and_scale(precision, scale)?,
            ),
            Accumulator::Mean { sums, counts } => {
                let counts = sized(counts, groups, 0);
                let means: Float64Array = sized(sums, groups, 0.0)
                    .iter()
                    .zip(&counts)
                    .map(|(&sum, &n)| (n > 0).then(|| sum / n as f64))
                    .collect();
                Arc::new(means)
            }
            Accumulator::MeanDecimal {
                sums,
                counts,
                scale,
            } => {
                let counts = sized(counts, groups, 0);
                let unit = 10f64.powi(scale as i32);
                let means: Float64Array = sized(sums, groups, 0)
                    .iter()
                    .zip(&counts)
                    .map(|(&sum, &n)| (n > 0).then(|| sum as f64 / unit / n as f64))
                    .collect();
                Arc::new(means)
            }
            Accumulator::Moments { moments, std } => {
                let spread: Float64Array = sized(moments, groups, (0, 0.0, 0.0))
                    .iter()
                    .map(|&(n, _, m2)| {
                        (n > 1).then(|| {
                            let variance = m2 / (n - 1) as f64;
                            if std { variance.sqrt() } else { variance }
                        })
                    })
                    .collect();
                Arc::new(spread)
            }
            Accumulator::Pick {
                func,
                candidates,
                groups: ids,
                ..
            } => {
                if candidates.iter().all(|c| c.is_empty()) {
                    return Ok(new_null_array(output, groups));
                }
                let parts: Vec<&dyn Array> = candidates.iter().map(|c| c.as_ref()).collect();
                let all = concat(&parts)?;
                let compare = make_comparator(all.as_ref(), all.as_ref(), SortOptions::default())?;
                let mut chosen: Vec<Option<u32>> = vec![None; groups];
                for (i, &g) in ids.iter().enumerate() {
                    let slot = &mut chosen[g as usize];
                    let better = match (func, *slot) {
                        (_, None) => true,
                        (AggFunc::First, Some(_)) => false,
                        (AggFunc::Last, Some(_)) => true,
                        (AggFunc::Min, Some(current)) => compare(i, current as usize).is_lt(),
                        (_, Some(current)) => compare(i, current as usize).is_gt(),
                    };
                    if better {
                        *slot = Some(i as u32);
                    }
                }
                take(all.as_ref(), &UInt32Array::from(chosen), None)?
            }
            Accumulator::Collect {
                values,
                groups: ids,
                quantile,
            } => Arc::new(quantiles(values, &ids, groups, quantile)),
            Accumulator::Distinct { seen, .. } => {
                let mut counts = vec![0u64; groups];
                for (g, _) in seen {
                    counts[g as usize] += 1;
                }
                Arc::new(UInt64Array::from(counts))
            }
        })
    }
}

/// Adds each non-null value of `values` (cast to `T`) to its group's entry of `sums`.
fn add_per_group<T: ArrowPrimitiveType>(
    sums: &mut [T::Native],
    values: &ArrayRef,
    ids: &[u32],
    plus: impl Fn(T::Native, T::Native) -> T::Native,
) -> Result<(), ArrowError> {
    let values = cast(values, &T::DATA_TYPE)?;
    let values = values.as_primitive::<T>();
    for (row, &g) in ids.iter().enumerate() {
        if values.is_valid(row) {
            sums[g as usize] = plus(sums[g as usize], values.value(row));
        }
    }
    Ok(())
}

fn decimal_overflow(precision: u8, scale: i8) -> ArrowError {
    ArrowError::ComputeError(format!(
        "sum(): the sum of a group overflows decimal128({precision}, {scale})"
    ))
}

/// Adds each non-null decimal of `values` (brought to `scale`; the values at `picked`, when
/// given) to its group's sum in `sums`.
fn add_decimals(
    sums: &mut [i128],
    values: &ArrayRef,
    picked: Option<&[u32]>,
    ids: &[u32],
    precision: u8,
    scale: i8,
) -> Result<(), ArrowError> {
    // Values of the sum's scale are added as they are: a cast to a wider precision would check
    // every value against it (a tenth of TPC-H Q1's time).
    let values = match values.data_type() {
        DataType::Decimal128(_, s) if *s == scale => values.clone(),
        _ => cast(values, &DataType::Decimal128(38, scale))?,
    };
    let values = values.as_primitive::<Decimal128Type>();
    let raw: &[i128] = values.values();
    // Overflow is checked once per morsel, not per row: a flag folded over the adds keeps
    // the loop free of early exits.
    let mut overflowed = false;
    let mut add = |g: u32, value: i128| {
        let sum = &mut sums[g as usize];
        let (added, overflow) = sum.overflowing_add(value);
        *sum = added;
        overflowed |= overflow;
    };
    match (values.nulls(), picked) {
        (None, None) => raw.iter().zip(ids).for_each(|(&value, &g)| add(g, value)),
        (None, Some(picked)) => picked
            .iter()
            .zip(ids)
            .for_each(|(&row, &g)| add(g, raw[row as usize])),
        (Some(nulls), None) => raw
            .iter()
            .zip(ids)
            .zip(nulls.iter())
            .filter(|(_, valid)| *valid)
            .for_each(|((&value, &g), _)| add(g, value)),
        (Some(nulls), Some(picked)) => picked
            .iter()
            .zip(ids)
            .filter(|(row, _)| nulls.is_valid(**row as usize))
            .for_each(|(&row, &g)| add(g, raw[row as usize])),
    }
    if overflowed {
        return Err(decimal_overflow(precision, scale));
    }
    Ok(())
}

/// Per group: the `quantile` of its collected values (null for a group without any).
///
/// The values are bucketed by group (a counting sort on the group id), then each group's
/// bucket is partially ordered with a selection, not sorted: O(n) per group on average. NaN is
/// above every number, as in a float sort.
fn quantiles(values: Vec<f64>, ids: &[u32], groups: usize, quantile: Quantile) -> Float64Array {
    let mut offsets = vec![0usize; groups + 1];
    for &g in ids {
        offsets[g as usize + 1] += 1;
    }
    for g in 0..groups {
        offsets[g + 1] += offsets[g];
    }
    let mut next = offsets.clone();
    let mut bucketed = vec![0f64; values.len()];
    for (value, &g) in values.into_iter().zip(ids) {
        let slot = &mut next[g as usize];
        bucketed[*slot] = value;
        *slot += 1;
    }
    let mut buckets: Vec<&mut [f64]> = Vec::with_capacity(groups);
    let mut rest = bucketed.as_mut_slice();
    for g in 0..groups {
        let (bucket, tail) = rest.split_at_mut(offsets[g + 1] - offsets[g]);
        buckets.push(bucket);
        rest = tail;
    }
    pool()
        .install(|| {
            buckets
                .into_par_iter()
                .map(|bucket| quantile_of(bucket, quantile))
                .collect::<Vec<_>>()
        })
        .into()
}

/// The `quantile` of `values` (reordered in place), None when there are none.
fn quantile_of(values: &mut [f64], quantile: Quantile) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let position = quantile.q() * (values.len() - 1) as f64;
    let lower = position.floor() as usize;
    let (_, &mut low, above) = values.select_nth_unstable_by(lower, f64::total_cmp);
    // Everything after the lower value is at least it: the next value is their minimum.
    let high = if position > lower as f64 {
        above.iter().copied().min_by(f64::total_cmp).unwrap_or(low)
    } else {
        low
    };
    Some(match quantile.interpolation {
        Interpolation::Nearest if position.round() as usize == lower => low,
        Interpolation::Nearest => high,
        Interpolation::Lower => low,
        Interpolation::Higher => high,
        Interpolation::Midpoint => (low + high) / 2.0,
        Interpolation::Linear => low + (high - low) * (position - lower as f64),
    })
}

/// One task's share of the aggregation: its groups, their keys and their accumulators.
struct Partial {
    table: KeyTable,
    /// Per key expression: the key values of this task's groups, in group order, in parts.
    key_parts: Vec<Vec<ArrayRef>>,
    accumulators: Vec<Accumulator>,
}

impl Partial {
    /// Folds the keys and accumulators of `other` (a later run) into this partial:
    /// `mapping[g]` is the id here of `other`'s group `g`, `new_groups` those of its groups
    /// that are new here, in order, and there are `groups` groups here after the merge.
    fn fold(
        &mut self,
        other: Partial,
        mapping: &[u32],
        new_groups: Vec<u32>,
        groups: usize,
    ) -> Result<(), ArrowError> {
        if !new_groups.is_empty() {
            let new_groups = UInt32Array::from(new_groups);
            for (mine, theirs) in self.key_parts.iter_mut().zip(other.key_parts) {
                let theirs: Vec<&dyn Array> = theirs.iter().map(|a| a.as_ref()).collect();
                mine.push(take(concat(&theirs)?.as_ref(), &new_groups, None)?);
            }
        }
        for (accumulator, theirs) in self.accumulators.iter_mut().zip(other.accumulators) {
            accumulator.merge(theirs, mapping, groups)?;
        }
        Ok(())
    }
}

/// When every partial has an `IntegerIds::Direct` table, lets the first one's grow to hold
/// the keys of all `rows` rows (the others' groups then merge into it, a lookup each) and
/// answers true.
fn widen_direct(partials: &mut [Partial], rows: usize) -> bool {
    let direct = partials.iter().all(|p| {
        matches!(
            p.table,
            KeyTable::Integer {
                ids: IntegerIds::Direct { .. },
                ..
            }
        )
    });
    if direct && let KeyTable::Integer { ids, .. } = &mut partials[0].table {
        ids.widen(rows);
    }
    direct
}

/// The number of groups (over all runs) from which the key tables merge in parallel.
const PARALLEL_MERGE_GROUPS: usize = 1 << 16;

/// The keys of an `Integer` or `Packed` table's groups as `u128`s (a null integer as 2^64,
/// which no i64 key becomes); None for other tables.
fn wide_keys(table: &KeyTable) -> Option<Vec<u128>> {
    match table {
        KeyTable::Integer { keys, .. } => Some(
            keys.iter()
                .map(|k| k.map_or(1 << 64, |v| u128::from(v as u64)))
                .collect(),
        ),
        KeyTable::Packed { keys, .. } => Some(keys.clone()),
        _ => None,
    }
}

/// Merges the groups of several runs (`keys[run]`: each group's key, in the run's order) in
/// parallel: per run, the merged id of each of its groups and its groups that are new (in
/// order), and the number of merged groups. Ids follow first appearance, runs in order.
///
/// Each run's groups are split into partitions by hash; each partition, on its own task,
/// finds the first appearance of each of its keys (walking the runs in order); one linear pass
/// then numbers the first appearances. TPC-H Q18 (1.5 M order keys) merged one run after
/// another into one table was a fifth of its aggregation's time.
fn merge_wide(keys: &[Vec<u128>]) -> (Vec<Vec<u32>>, Vec<Vec<u32>>, usize) {
    const PARTITIONS: usize = 64;
    let hasher = BuildHasherDefault::<KeyHasher>::default();
    // Bits 20..26 of the hash: apart from the low bits a partition's table indexes by and the
    // high bits it tags entries with.
    let partition_of = |key: &u128| ((hasher.hash_one(key) >> 20) as usize) % PARTITIONS;
    let buckets: Vec<Vec<Vec<u32>>> = pool().install(|| {
        keys.par_iter()
            .map(|keys| {
                let mut buckets: Vec<Vec<u32>> = (0..PARTITIONS)
                    .map(|_| Vec::with_capacity(keys.len() / PARTITIONS * 5 / 4))
                    .collect();
                for (local, key) in keys.iter().enumerate() {
                    buckets[partition_of(key)].push(local as u32);
                }
                buckets
            })
            .collect()
    });
    let mut offsets = Vec::with_capacity(keys.len() + 1);
    offsets.push(0usize);
    for run in keys {
        offsets.push(offsets.last().copied().unwrap_or(0) + run.len());
    }
    let total = offsets[keys.len()];
    // Per partition: (position, position of its key's first appearance), positions counted
    // over all runs' groups in order.
    let firsts: Vec<Vec<(u32, u32)>> = pool().install(|| {
        (0..PARTITIONS)
            .into_par_iter()
            .map(|partition| {
                // Sized for an even share of the groups, so it does not rehash as it grows.
                let share: usize = buckets.iter().map(|b| b[partition].len()).sum();
                let mut first: KeyMap<u128, u32> =
                    KeyMap::with_capacity_and_hasher(share, BuildHasherDefault::default());
                let mut out = Vec::with_capacity(share);
                for (run, run_buckets) in buckets.iter().enumerate() {
                    for &local in &run_buckets[partition] {
                        let position = (offsets[run] + local as usize) as u32;
                        let found = *first.entry(keys[run][local as usize]).or_insert(position);
                        out.push((position, found));
                    }
                }
                out
            })
            .collect()
    });
    drop(buckets);
    let mut first_of = vec![0u32; total];
    for (position, first) in firsts.into_iter().flatten() {
        first_of[position as usize] = first;
    }
    let mut merged_id = vec![0u32; total];
    let mut groups = 0u32;
    let mut mappings = Vec::with_capacity(keys.len());
    let mut new_groups = Vec::with_capacity(keys.len());
    for run in 0..keys.len() {
        let mut mapping = Vec::with_capacity(keys[run].len());
        let mut new = Vec::new();
        for position in offsets[run]..offsets[run + 1] {
            let first = first_of[position] as usize;
            let id = if first == position {
                new.push((position - offsets[run]) as u32);
                groups += 1;
                groups - 1
            } else {
                merged_id[first]
            };
            merged_id[position] = id;
            mapping.push(id);
        }
        mappings.push(mapping);
        new_groups.push(new);
    }
    (mappings, new_groups, groups as usize)
}

/// Everything the tasks share: what to evaluate and how.
struct Plan<'a> {
    input: &'a ViewSet,
    names: Vec<String>,
    keys: &'a [Expr],
    key_types: Vec<DataType>,
    aggs: &'a [AggExpr],
    /// What each morsel evaluates for aggregation `i`: its input, with each subexpression that
    /// is the whole input of an earlier aggregation read from that one's `shared` column.
    inputs: Vec<Expr>,
    /// Per aggregation: the column its values join the morsel's batch as, when a later input
    /// reads them.
    shared: Vec<Option<String>>,
    input_types: Vec<DataType>,
    output_types: Vec<DataType>,
    converter: Option<RowConverter>,
}

impl Plan<'_> {
    /// An empty partial for `rows` rows.
    fn partial(&self, rows: usize) -> Result<Partial, ArrowError> {
        Ok(Partial {
            table: KeyTable::new(&self.key_types, rows),
            key_parts: vec![Vec::new(); self.keys.len()],
            accumulators: self
                .aggs
                .iter()
                .zip(self.input_types.iter().zip(&self.output_types))
                .map(|(agg, (input, output))| Accumulator::new(agg.func, input, output))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Folds the rows of `morsels`, in order, into a fresh partial.
    fn run(&self, morsels: &[Morsel<'_>]) -> Result<Partial, ArrowError> {
        let mut partial = self.partial(morsels.iter().map(Morsel::len).sum())?;
        for morsel in morsels {
            let len = morsel.len();
            // A morsel whose selection keeps most rows of its span (a filter that drops few,
            // as TPC-H Q1's keeps 98.6%) is evaluated over the span, unselected rows included,
            // and its selected rows are picked where they are added up: gathering every column
            // first was a third of Q1's time. Expressions work row by row, so the selected rows
            // get the values they would get alone; if the span fails (a row the filter dropped
            // does not evaluate), the morsel is evaluated over its selected rows only.
            // A selection need not ascend (a sort's is a permutation): the span runs from its
            // least row to its greatest.
            let bounds = morsel.rows.and_then(|rows| {
                let first = *rows.iter().min()?;
                Some((rows, first, (rows.iter().max()? - first) as usize + 1))
            });
            let spanned = match bounds {
                Some((rows, first, span)) if rows.len() * 4 >= span * 3 => {
                    let first = first as usize;
                    let batch = batch_of(
                        &self.input.schema,
                        morsel.chunk,
                        &self.names,
                        None,
                        (first, span),
                    )?;
                    self.evaluate(batch).ok().map(|(keys, values)| {
                        let picked: Vec<u32> = rows.iter().map(|&row| row - first as u32).collect();
                        (keys, values, Some(picked))
                    })
                }
                _ => None,
            };
            let (keys, values, picked) = match spanned {
                Some(spanned) => spanned,
                None => {
                    let batch = batch_of(
                        &self.input.schema,
                        morsel.chunk,
                        &self.names,
                        morsel.rows,
                        morsel.range,
                    )?;
                    let (keys, values) = self.evaluate(batch)?;
                    (keys, values, None)
                }
            };
            // Packed keys are packed over the span and picked as integers (rather than taking
            // the key columns out first, strings included); `new_rows` are then rows of the
            // span.
            let picked_packed = picked
                .as_deref()
                .and_then(|picked| partial.table.assign_packed_at(&keys, picked));
            let (keys, (ids, new_rows)) = match (picked_packed, &picked) {
                (Some(assigned), _) => (keys, assigned),
                (None, picked) => {
                    let keys = match picked {
                        Some(picked) => {
                            let picked = UInt32Array::from(picked.clone());
                            keys.iter()
                                .map(|key| take(key.as_ref(), &picked, None))
                                .collect::<Result<Vec<_>, _>>()?
                        }
                        None => keys,
                    };
                    let assigned =
                        match partial.table.assign(&keys, self.converter.as_ref(), len)? {
                            Some(assigned) => assigned,
                            None => {
                                // Keys that do not pack: the groups so far move to the row format.
                                let converter = self
                                    .converter
                                    .as_ref()
                                    .expect("packed keys have a converter");
                                partial.table = KeyTable::encoded(&partial.key_parts, converter)?;
                                partial
                                    .table
                                    .assign(&keys, Some(converter), len)?
                                    .expect("encoded keys always fit")
                            }
                        };
                    (keys, assigned)
                }
            };
            if !new_rows.is_empty() {
                let new_rows = UInt32Array::from(new_rows);
                for (parts, key) in partial.key_parts.iter_mut().zip(&keys) {
                    parts.push(take(key.as_ref(), &new_rows, None)?);
                }
            }
            drop(keys);
            let groups = partial.table.len();
            for (accumulator, values) in partial.accumulators.iter_mut().zip(values) {
                accumulator.update_at(&values, picked.as_deref(), &ids, groups)?;
            }
        }
        Ok(partial)
    }

    /// The keys and the aggregations' inputs over `batch`'s rows.
    fn evaluate(&self, batch: RecordBatch) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>), ArrowError> {
        let len = batch.num_rows();
        let keys = self
            .keys
            .iter()
            .map(|key| evaluate(key, &batch)?.into_array(len))
            .collect::<Result<Vec<_>, _>>()?;
        let mut batch = batch;
        let mut values = Vec::with_capacity(self.inputs.len());
        for (input, shared) in self.inputs.iter().zip(&self.shared) {
            let value = evaluate(input, &batch)?.into_array(len)?;
            if let Some(name) = shared {
                batch = with_column(&batch, name, value.clone())?;
            }
            values.push(value);
        }
        Ok((keys, values))
    }
}

/// `batch` with one more column, `name` = `values`.
fn with_column(
    batch: &RecordBatch,
    name: &str,
    values: ArrayRef,
) -> Result<RecordBatch, ArrowError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(name, values.data_type().clone(), true));
    let mut columns = batch.columns().to_vec();
    columns.push(values);
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// `expr` without its aliases.
fn bare(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias { input, .. } => bare(input),
        other => other,
    }
}

/// Common subexpressions among the aggregations' inputs: an input that is not a bare column
/// or literal and recurs inside (or as) a later input is evaluated once per morsel, and the
/// later inputs read its values. TPC-H Q1 computes `l_extendedprice * (1 - l_discount)` alone
/// and again inside `... * (1 + l_tax)`: reusing it saves two of its six decimal kernels.
/// Returns the inputs to evaluate and the column each shared input's values are kept in.
fn share_inputs(aggs: &[AggExpr]) -> (Vec<Expr>, Vec<Option<String>>) {
    fn contains(expr: &Expr, part: &Expr) -> bool {
        bare(expr) == part
            || expr
                .children()
                .into_iter()
                .any(|child| relay_plan::with_stack_room(|| contains(child, part)))
    }
    fn replace(expr: Expr, shared: &[(&Expr, String)]) -> Expr {
        match shared.iter().find(|(part, _)| bare(&expr) == *part) {
            Some((_, name)) => Expr::col(name.clone()),
            None => expr.map_children(&mut |child| replace(child, shared)),
        }
    }
    let mut inputs = Vec::with_capacity(aggs.len());
    let mut names = Vec::with_capacity(aggs.len());
    let mut shared: Vec<(&Expr, String)> = Vec::new();
    for (i, agg) in aggs.iter().enumerate() {
        inputs.push(replace(agg.input.clone(), &shared));
        let input = bare(&agg.input);
        let reused = !matches!(input, Expr::Column(_) | Expr::Literal(_))
            && aggs[i + 1..]
                .iter()
                .any(|later| contains(&later.input, input));
        // A name no column of the input can have (a NUL byte leads it).
        let name = reused.then(|| format!("\u{0}aggregation input {i}"));
        if let Some(name) = &name {
            shared.push((input, name.clone()));
        }
        names.push(name);
    }
    (inputs, names)
}

/// The groups of `input` by `keys` with one column per aggregation: `schema`'s columns.
pub fn aggregate(
    input: ViewSet,
    keys: &[Expr],
    aggs: &[AggExpr],
    schema: SchemaRef,
) -> Result<ViewSet, ExecError> {
    let rows = input.num_rows();
    if rows > u32::MAX as usize {
        return Err(ExecError::Arrow(ArrowError::InvalidArgumentError(format!(
            "group_by(): {rows} rows are more than the {} an aggregation groups",
            u32::MAX
        ))));
    }
    let mut names: Vec<String> = Vec::new();
    for expr in keys.iter().chain(aggs.iter().map(|agg| &agg.input)) {
        for name in expr.columns() {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let type_of = |expr: &Expr| {
        relay_plan::resolve::resolve(expr.clone(), &input.schema).map(|r| r.data_type)
    };
    let key_types = keys.iter().map(type_of).collect::<Result<Vec<_>, _>>()?;
    let input_types = aggs
        .iter()
        .map(|agg| type_of(&agg.input))
        .collect::<Result<Vec<_>, _>>()?;
    let output_types: Vec<DataType> = schema.fields()[keys.len()..]
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let converter = match KeyTable::new(&key_types, 0) {
        KeyTable::Encoded(_) | KeyTable::Packed { .. } => Some(RowConverter::new(
            key_types
                .iter()
                .map(|t| SortField::new(t.clone()))
                .collect(),
        )?),
        _ => None,
    };
    let (inputs, shared) = share_inputs(aggs);
    let plan = Plan {
        input: &input,
        names,
        keys,
        key_types,
        aggs,
        inputs,
        shared,
        input_types,
        output_types,
        converter,
    };

    // A few runs per thread, so a run of slow morsels does not hold the others up.
    let morsels = morsels(&input);
    let runs = (pool().current_num_threads() * 4).clamp(1, morsels.len().max(1));
    let per_run = morsels.len().div_ceil(runs).max(1);
    let mut partials: Vec<Partial> = pool().install(|| {
        morsels
            .par_chunks(per_run)
            .map(|run| plan.run(run))
            .collect::<Result<_, ArrowError>>()
    })?;
    // Some runs met keys that do not pack: every run's groups merge in the row format.
    if partials
        .iter()
        .any(|p| matches!(p.table, KeyTable::Encoded(_)))
    {
        let converter = plan
            .converter
            .as_ref()
            .expect("packed keys have a converter");
        for partial in &mut partials {
            if matches!(partial.table, KeyTable::Packed { .. }) {
                partial.table = KeyTable::encoded(&partial.key_parts, converter)?;
            }
        }
    }

    // Direct tables merge one after another into one direct table over all their ranges
    // (when that is narrow enough), a lookup per group; otherwise, with many groups, the key
    // tables merge in parallel (`merge_wide`). The accumulators fold in run order, which is
    // linear in the groups.
    let direct = partials.len() > 1 && widen_direct(&mut partials, rows);
    let wide: Option<Vec<Vec<u128>>> = if !direct
        && partials.len() > 1
        && partials.iter().map(|p| p.table.len()).sum::<usize>() >= PARALLEL_MERGE_GROUPS
    {
        partials.iter().map(|p| wide_keys(&p.table)).collect()
    } else {
        None
    };
    let (mut merged, groups) = match (partials.len(), wide) {
        (0, _) => {
            let empty = plan.partial(0)?;
            let groups = empty.table.len();
            (empty, groups)
        }
        (_, Some(wide)) => {
            let (mappings, new_groups, groups) = merge_wide(&wide);
            drop(wide);
            let mut partials = partials
                .into_iter()
                .zip(mappings.into_iter().zip(new_groups));
            let (mut merged, _) = partials.next().expect("one partial at least");
            for (partial, (mapping, new_groups)) in partials {
                merged.fold(partial, &mapping, new_groups, groups)?;
            }
            (merged, groups)
        }
        _ => {
            let mut partials = partials.into_iter();
            let mut merged = partials.next().expect("one partial at least");
            for mut partial in partials {
                let table = std::mem::replace(&mut partial.table, KeyTable::Single);
                let (mapping, new_groups) = merged.table.merge(table);
                let groups = merged.table.len();
                merged.fold(partial, &mapping, new_groups, groups)?;
            }
            let groups = merged.table.len();
            (merged, groups)
        }
    };

    let mut columns = Vec::with_capacity(schema.fields().len());
    for (parts, field) in merged.key_parts.iter().zip(schema.fields()) {
        let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
        columns.push(if parts.is_empty() {
            new_empty_array(field.data_type())
        } else {
            concat(&parts)?
        });
    }
    let accumulators = std::mem::take(&mut merged.accumulators);
    let outputs: Vec<ArrayRef> = pool().install(|| {
        accumulators
            .into_par_iter()
            .zip(plan.output_types.par_iter())
            .map(|(accumulator, output)| accumulator.finish(groups, output))
            .collect::<Result<_, ArrowError>>()
    })?;
    columns.extend(outputs);
    for (column, field) in columns.iter_mut().zip(schema.fields()) {
        if column.data_type() != field.data_type() {
            *column = cast(column, field.data_type())?;
        }
    }
    Ok(ViewSet {
        schema,
        chunks: vec![Chunk {
            columns,
            len: groups,
            selection: None,
        }],
    })
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::nodes::memory;

    /// A sort's selection is a permutation, not ascending: a morsel of it spans from its
    /// least row to its greatest (it once took its first and last rows for the bounds).
    #[test]
    fn groups_over_a_sorted_input_follow_its_order() {
        let rows = MORSEL_ROWS * 3 + 5;
        let key = |i: usize| (!i.is_multiple_of(9)).then_some((i % 4) as i32);
        let batch = arrow::array::RecordBatch::try_from_iter(vec![
            (
                "k",
                Arc::new(Int32Array::from_iter((0..rows).map(key))) as ArrayRef,
            ),
            (
                "x",
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))) as _,
            ),
        ])
        .unwrap();
        let plan = Arc::new(relay_plan::LogicalPlan::memory(batch.schema(), vec![batch]));
        let descending = relay_plan::SortKey {
            expr: Expr::col("x"),
            descending: true,
            nulls_last: false,
        };
        let sorted = Arc::new(plan.sort(vec![descending]).unwrap());
        let aggs = vec![
            AggExpr::new(AggFunc::Sum, Expr::col("x")).alias("sum"),
            AggExpr::new(AggFunc::First, Expr::col("x")).alias("first"),
        ];
        let grouped = sorted.aggregate(vec![Expr::col("k")], aggs).unwrap();
        let result = crate::execute::execute(&grouped, &crate::profile::Profile::default())
            .unwrap()
            .record_batches()
            .unwrap();
        let batch = arrow::compute::concat_batches(&result[0].schema(), &result).unwrap();
        // Expected: groups in order of first appearance going down from the last row.
        let mut order: Vec<Option<i32>> = Vec::new();
        for i in (0..rows).rev() {
            if !order.contains(&key(i)) {
                order.push(key(i));
            }
        }
        let keys: Vec<Option<i32>> = batch
            .column(0)
            .as_primitive::<arrow::datatypes::Int32Type>()
            .iter()
            .collect();
        assert_eq!(keys, order);
        for (g, k) in order.iter().enumerate() {
            let members = (0..rows).filter(|&i| key(i) == *k).map(|i| i as f64);
            let sum = batch
                .column(1)
                .as_primitive::<arrow::datatypes::Float64Type>();
            let first = batch
                .column(2)
                .as_primitive::<arrow::datatypes::Float64Type>();
            assert_eq!(sum.value(g), members.clone().sum::<f64>());
            assert_eq!(first.value(g), members.fold(f64::MIN, f64::max));
        }
    }

    #[test]
    fn groups_keep_their_first_appearance_across_morsels_and_runs() {
        let rows = MORSEL_ROWS * 9 + 10;
        let key = |i: usize| {
            if i.is_multiple_of(7) {
                None
            } else {
                Some(((rows - i) % 5) as i32)
            }
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int32, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from_iter((0..rows).map(key))),
                Arc::new(Float64Array::from_iter_values((0..rows).map(|i| i as f64))),
            ],
        )
        .unwrap();
        let view = memory(schema, &[batch]);
        let aggs = vec![
            AggExpr::new(AggFunc::Len, Expr::col("x")).alias("len"),
            AggExpr::new(AggFunc::First, Expr::col("x")).alias("first"),
            AggExpr::new(AggFunc::Last, Expr::col("x")).alias("last"),
            AggExpr::new(AggFunc::Max, Expr::col("x")).alias("max"),
            AggExpr::new(AggFunc::Std, Expr::col("x")).alias("std"),
        ];
        let plan = Arc::new(relay_plan::LogicalPlan::memory(view.schema.clone(), vec![]));
        let output = plan
            .aggregate(vec![Expr::col("k")], aggs.clone())
            .unwrap()
            .schema()
            .unwrap();
        let result = aggregate(view, &[Expr::col("k")], &aggs, output).unwrap();
        let columns = &result.chunks[0].columns;
        // Expected, by a plain sequential pass.
        let mut order: Vec<Option<i32>> = Vec::new();
        for i in 0..rows {
            if !order.contains(&key(i)) {
                order.push(key(i));
            }
        }
        assert_eq!(
            columns[0]
                .as_primitive::<arrow::datatypes::Int32Type>()
                .iter()
                .collect::<Vec<_>>(),
            order
        );
        for (g, k) in order.iter().enumerate() {
            let members: Vec<f64> = (0..rows)
                .filter(|&i| key(i) == *k)
                .map(|i| i as f64)
                .collect();
            let n = members.len() as f64;
            let mean = members.iter().sum::<f64>() / n;
            let std =
                (members.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt();
            assert_eq!(
                columns[1]
                    .as_primitive::<arrow::datatypes::UInt32Type>()
                    .value(g) as usize,
                members.len()
            );
            assert_eq!(
                columns[2].as_primitive::<Float64Type>().value(g),
                members[0]
            );
            assert_eq!(
                columns[3].as_primitive::<Float64Type>().value(g),
                *members.last().unwrap()
            );
            assert_eq!(
                columns[4].as_primitive::<Float64Type>().value(g),
                *members.last().unwrap()
            );
            assert!((columns[5].as_primitive::<Float64Type>().value(g) - std).abs() < 1e-6 * std);
        }
    }

    #[test]
    fn packed_keys_fall_back_to_the_row_format_mid_run_and_keep_first_appearance() {
        // (string, int) keys pack until a long string (or a null int) appears in a later
        // morsel; the groups keep their order and counts whichever way each run ends up.
        let rows = MORSEL_ROWS * 9 + 10;
        let long_from = MORSEL_ROWS * 5 + 3;
        let name = |i: usize| match i % 3 {
            0 => None,
            1 if i >= long_from => Some("a string over seven bytes".to_string()),
            r => Some(format!("s{r}")),
        };
        let number = |i: usize| {
            if i >= long_from && i.is_multiple_of(11) {
                None
            } else {
                Some(((rows - i) % 4) as i64)
            }
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter((0..rows).map(name))),
                Arc::new(Int64Array::from_iter((0..rows).map(number))),
            ],
        )
        .unwrap();
        let keys = [Expr::col("s"), Expr::col("n")];
        let aggs = vec![AggExpr::new(AggFunc::Len, Expr::col("n")).alias("len")];
        for view in [
            memory(schema.clone(), std::slice::from_ref(&batch)),
            memory(schema.clone(), &[batch.slice(0, long_from - 10)]),
        ] {
            let rows = view.num_rows();
            let plan = Arc::new(relay_plan::LogicalPlan::memory(view.schema.clone(), vec![]));
            let output = plan
                .aggregate(keys.to_vec(), aggs.clone())
                .unwrap()
                .schema()
                .unwrap();
            let result = aggregate(view, &keys, &aggs, output).unwrap();
            let columns = &result.chunks[0].columns;
            #[allow(clippy::type_complexity)]
            let mut expected: Vec<((Option<String>, Option<i64>), u64)> = Vec::new();
            for i in 0..rows {
                let key = (name(i), number(i));
                match expected.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, count)) => *count += 1,
                    None => expected.push((key, 1)),
                }
            }
            let names: Vec<Option<String>> = columns[0]
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect();
            let numbers: Vec<Option<i64>> = columns[1].as_primitive::<Int64Type>().iter().collect();
            let counts: Vec<u64> = cast(&columns[2], &DataType::UInt64)
                .unwrap()
                .as_primitive::<UInt64Type>()
                .values()
                .to_vec();
            let got: Vec<_> = names.into_iter().zip(numbers).zip(counts).collect();
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn an_input_that_recurs_in_a_later_one_is_evaluated_once_with_the_same_results() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("x", DataType::Int64, true),
        ]));
        let rows = MORSEL_ROWS + 5;
        let x = |i: usize| (!i.is_multiple_of(13)).then_some(i as i64 % 100);
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(
                    (0..rows).map(|i| (i % 3) as i64),
                )),
                Arc::new(Int64Array::from_iter((0..rows).map(x))),
            ],
        )
        .unwrap();
        let lit = |v: i64| Expr::lit(Arc::new(Int64Array::from(vec![v])));
        let doubled = || Expr::col("x").binary(relay_plan::BinaryOp::Mul, lit(2));
        let aggs = vec![
            AggExpr::new(AggFunc::Sum, doubled()).alias("doubled"),
            AggExpr::new(
                AggFunc::Sum,
                doubled().binary(relay_plan::BinaryOp::Add, lit(1)),
            )
            .alias("plus_one"),
            AggExpr::new(AggFunc::Max, doubled().alias("again")).alias("max"),
        ];
        let (inputs, shared) = share_inputs(&aggs);
        assert!(shared[0].is_some() && shared[1].is_none() && shared[2].is_none());
        assert!(matches!(&inputs[2], Expr::Column(name) if Some(name) == shared[0].as_ref()));
        let view = memory(schema, &[batch]);
        let plan = Arc::new(relay_plan::LogicalPlan::memory(view.schema.clone(), vec![]));
        let output = plan
            .aggregate(vec![Expr::col("k")], aggs.clone())
            .unwrap()
            .schema()
            .unwrap();
        let result = aggregate(view, &[Expr::col("k")], &aggs, output).unwrap();
        let columns = &result.chunks[0].columns;
        for k in 0..3 {
            let values: Vec<i64> = (0..rows)
                .filter(|i| i % 3 == k)
                .filter_map(x)
                .map(|v| v * 2)
                .collect();
            let int = |c: usize| {
                cast(&columns[c], &DataType::Int64)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .value(k)
            };
            assert_eq!(int(1), values.iter().sum::<i64>());
            assert_eq!(int(2), values.iter().map(|v| v + 1).sum::<i64>());
            assert_eq!(int(3), *values.iter().max().unwrap());
        }
    }

    #[test]
    fn dense_selections_aggregate_over_their_span_unless_a_dropped_row_fails() {
        use arrow::array::Decimal128Array;
        // x: decimals; y: an int64 that a strict cast to int8 rejects only on rows the
        // selection drops in the second chunk.
        let rows = MORSEL_ROWS + 100;
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("x", DataType::Decimal128(15, 2), true),
            Field::new("y", DataType::Int64, false),
        ]));
        let x = |i: usize| (!i.is_multiple_of(17)).then_some(i as i128 * 3 - 50);
        let chunk = |bad: bool| {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| ["a", "bb", "ccc"][i % 3]),
                )),
                Arc::new(
                    Decimal128Array::from_iter((0..rows).map(x))
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                ),
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| {
                    if bad && i % 10 == 9 {
                        1000
                    } else {
                        (i % 100) as i64
                    }
                }))),
            ];
            Chunk {
                columns,
                len: rows,
                selection: Some(Arc::new((0..rows as u32).filter(|i| i % 10 != 9).collect())),
            }
        };
        let view = ViewSet {
            schema: schema.clone(),
            chunks: vec![chunk(false), chunk(true)],
        };
        let aggs = vec![
            AggExpr::new(AggFunc::Sum, Expr::col("x")).alias("sum"),
            AggExpr::new(AggFunc::Mean, Expr::col("x")).alias("mean"),
            AggExpr::new(AggFunc::Len, Expr::col("x")).alias("len"),
            AggExpr::new(
                AggFunc::Max,
                Expr::Cast {
                    input: Arc::new(Expr::col("y")),
                    to: DataType::Int8,
                },
            )
            .alias("max"),
        ];
        let plan = Arc::new(relay_plan::LogicalPlan::memory(schema.clone(), vec![]));
        let output = plan
            .aggregate(vec![Expr::col("k")], aggs.clone())
            .unwrap()
            .schema()
            .unwrap();
        let result = aggregate(view, &[Expr::col("k")], &aggs, output).unwrap();
        let columns = &result.chunks[0].columns;
        assert_eq!(
            columns[0].as_string::<i32>().iter().collect::<Vec<_>>(),
            [Some("a"), Some("bb"), Some("ccc")]
        );
        for k in 0..3 {
            let members: Vec<usize> = (0..rows).filter(|i| i % 10 != 9 && i % 3 == k).collect();
            let values: Vec<i128> = members.iter().filter_map(|&i| x(i)).collect();
            let sum: i128 = values.iter().sum::<i128>() * 2;
            assert_eq!(columns[1].as_primitive::<Decimal128Type>().value(k), sum);
            let mean = columns[2].as_primitive::<Float64Type>().value(k);
            assert!((mean - sum as f64 / 100.0 / (values.len() * 2) as f64).abs() < 1e-9);
            assert_eq!(
                cast(&columns[3], &DataType::UInt64)
                    .unwrap()
                    .as_primitive::<UInt64Type>()
                    .value(k),
                members.len() as u64 * 2
            );
            let max = members.iter().map(|&i| (i % 100) as i64).max().unwrap();
            assert_eq!(
                cast(&columns[4], &DataType::Int64)
                    .unwrap()
                    .as_primitive::<Int64Type>()
                    .value(k),
                max
            );
        }
    }

    #[test]
    fn many_groups_merge_in_parallel_in_order_of_first_appearance() {
        // Direct: runs that share some keys, against a sequential first-appearance numbering.
        let runs: Vec<Vec<u128>> = vec![vec![5, 1, 9], vec![1, 7, 5, 3], vec![], vec![3, 8, 9, 2]];
        let (mappings, new_groups, groups) = merge_wide(&runs);
        let mut order: Vec<u128> = Vec::new();
        for (run, keys) in runs.iter().enumerate() {
            let mut new = Vec::new();
            for (local, key) in keys.iter().enumerate() {
                if !order.contains(key) {
                    order.push(*key);
                    new.push(local as u32);
                }
                assert_eq!(order[mappings[run][local] as usize], *key);
            }
            assert_eq!(new_groups[run], new);
        }
        assert_eq!(groups, order.len());
        // Through the aggregation: more groups than `PARALLEL_MERGE_GROUPS`, a null key, and
        // keys that recur in later runs; keys far apart, so the runs hash them.
        let rows = MORSEL_ROWS * 6;
        sums_and_firsts_match_a_sequential_pass(rows, |i| {
            if i % 1000 == 999 {
                None
            } else {
                Some(((i * 7919) % (rows / 2)) as i64 * 1_000_003)
            }
        });
    }

    /// Groups `k` (`key(i)` for row `i` of `rows`) with the sum and first of `x = i`, and checks
    /// them against a plain sequential pass, group order included.
    fn sums_and_firsts_match_a_sequential_pass(rows: usize, key: impl Fn(usize) -> Option<i64>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("x", DataType::Int64, false),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter((0..rows).map(&key))),
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| i as i64))),
            ],
        )
        .unwrap();
        let aggs = vec![
            AggExpr::new(AggFunc::Sum, Expr::col("x")).alias("sum"),
            AggExpr::new(AggFunc::First, Expr::col("x")).alias("first"),
        ];
        let plan = Arc::new(relay_plan::LogicalPlan::memory(schema.clone(), vec![]));
        let output = plan
            .aggregate(vec![Expr::col("k")], aggs.clone())
            .unwrap()
            .schema()
            .unwrap();
        let result = aggregate(memory(schema, &[batch]), &[Expr::col("k")], &aggs, output).unwrap();
        let columns = &result.chunks[0].columns;
        let mut expected: Vec<(Option<i64>, i64, i64)> = Vec::new();
        let mut index: std::collections::HashMap<Option<i64>, usize> =
            std::collections::HashMap::new();
        for i in 0..rows {
            match index.get(&key(i)) {
                Some(&g) => expected[g].1 += i as i64,
                None => {
                    index.insert(key(i), expected.len());
                    expected.push((key(i), i as i64, i as i64));
                }
            }
        }
        let got: Vec<(Option<i64>, i64, i64)> = (0..result.chunks[0].len)
            .map(|g| {
                let int = |c: usize| cast(&columns[c], &DataType::Int64).unwrap();
                let k = int(0);
                let k = k.as_primitive::<Int64Type>();
                (
                    k.is_valid(g).then(|| k.value(g)),
                    int(1).as_primitive::<Int64Type>().value(g),
                    int(2).as_primitive::<Int64Type>().value(g),
                )
            })
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn integer_keys_in_a_narrow_range_index_an_array_that_grows_both_ways() {
        let rows = MORSEL_ROWS * 6;
        // Sorted, four rows a key, one key in four used (TPC-H's order keys): every run direct.
        sums_and_firsts_match_a_sequential_pass(rows, |i| Some((i / 4 * 4) as i64 + 1));
        // Falling keys, and many groups scattered over a range the array still takes.
        sums_and_firsts_match_a_sequential_pass(rows, |i| Some(-3 * i as i64));
        sums_and_firsts_match_a_sequential_pass(rows, |i| {
            if i % 7 == 0 {
                None
            } else {
                Some(((i * 7919) % (rows / 2)) as i64)
            }
        });
        // Keys at both ends of i64 (the array cannot span them) and a run of rising ones.
        sums_and_firsts_match_a_sequential_pass(rows, |i| match i % 3 {
            0 => Some(i64::MIN + (i % 5) as i64),
            1 => Some(i64::MAX - (i % 5) as i64),
            _ => Some(i as i64),
        });
    }

    #[test]
    fn a_direct_table_grows_to_take_keys_and_hashes_a_sparse_range() {
        let mut keys: Vec<Option<i64>> = Vec::new();
        let mut ids = IntegerIds::new(1000);
        let insert = |ids: &mut IntegerIds, keys: &mut Vec<Option<i64>>, key: i64| {
            let id = ids.get_or_insert(key, keys.len() as u32, keys);
            if id as usize == keys.len() {
                keys.push(Some(key));
            }
            id
        };
        for key in [10, 11, 5, 10, -40_000, 11] {
            insert(&mut ids, &mut keys, key);
        }
        assert!(matches!(ids, IntegerIds::Direct { .. }));
        assert_eq!(keys, vec![Some(10), Some(11), Some(5), Some(-40_000)]);
        assert_eq!(insert(&mut ids, &mut keys, 5), 2);
        // A key a million away from four groups: the range would be too sparse.
        assert_eq!(insert(&mut ids, &mut keys, 1_000_000), 4);
        assert!(matches!(ids, IntegerIds::Hashed(_)));
        for (id, key) in keys.clone().into_iter().enumerate() {
            assert_eq!(insert(&mut ids, &mut keys, key.unwrap()), id as u32);
        }
    }

    #[test]
    fn aggregates_per_group_with_nulls() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    Some("a"),
                    None,
                    Some("b"),
                ])),
                Arc::new(Float64Array::from(vec![
                    Some(1.0),
                    None,
                    Some(3.0),
                    Some(4.0),
                    None,
                ])),
            ],
        )
        .unwrap();
        let view = memory(schema, &[batch]);
        let x = || Expr::col("x");
        let aggs = vec![
            AggExpr::new(AggFunc::Sum, x()).alias("sum"),
            AggExpr::new(AggFunc::Mean, x()).alias("mean"),
            AggExpr::new(AggFunc::Min, x()).alias("min"),
            AggExpr::new(AggFunc::Count, x()).alias("count"),
            AggExpr::new(AggFunc::Len, x()).alias("len"),
            AggExpr::new(AggFunc::Last, x()).alias("last"),
        ];
        let plan = Arc::new(relay_plan::LogicalPlan::memory(view.schema.clone(), vec![]));
        let output = plan
            .aggregate(vec![Expr::col("k")], aggs.clone())
            .unwrap()
            .schema()
            .unwrap();
        let result = aggregate(view, &[Expr::col("k")], &aggs, output).unwrap();
        let column = |i: usize| result.chunks[0].columns[i].clone();
        assert_eq!(
            column(0).as_string::<i32>().iter().collect::<Vec<_>>(),
            vec![Some("a"), Some("b"), None]
        );
        assert_eq!(
            column(1).as_primitive::<Float64Type>().values().to_vec(),
            vec![4.0, 0.0, 4.0]
        );
        assert_eq!(
            column(2)
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(2.0), None, Some(4.0)]
        );
        assert_eq!(
            column(3)
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(1.0), None, Some(4.0)]
        );
        assert_eq!(
            column(4)
                .as_primitive::<arrow::datatypes::UInt32Type>()
                .values()
                .to_vec(),
            vec![2, 0, 1]
        );
        assert_eq!(
            column(5)
                .as_primitive::<arrow::datatypes::UInt32Type>()
                .values()
                .to_vec(),
            vec![2, 2, 1]
        );
        assert_eq!(
            column(6)
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(3.0), None, Some(4.0)]
        );
    }
}
