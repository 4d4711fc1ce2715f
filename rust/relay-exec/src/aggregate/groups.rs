//! Grouping: the hash tables that number each task's groups by their keys (integers, packed
//! keys, the row format), and how the tables of two tasks merge.

use std::hash::Hasher;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::compute::{cast, concat};
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use arrow::error::ArrowError;
use arrow::row::RowConverter;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use rustc_hash::FxHashMap;

use crate::keys::{KeyHasher, KeyMap, Nulls, pack, packable};

/// What `KeyTable::assign` gives for a morsel: each row's group id, and the rows that
/// started a new group.
pub(super) type Assigned = (Vec<u32>, Vec<u32>);

/// The groups a task has seen: a hash table from key to group id, ids in order of first
/// appearance.
pub(super) enum KeyTable {
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
pub(super) struct EncodedKeys {
    pub(super) ids: HashTable<u32>,
    /// Every group's row, in id order; group `id`'s is `bytes[starts[id]..starts[id + 1]]`.
    pub(super) bytes: Vec<u8>,
    pub(super) starts: Vec<usize>,
    /// Each group's hash.
    pub(super) hashes: Vec<u64>,
}

impl EncodedKeys {
    pub(super) fn new() -> Self {
        EncodedKeys {
            ids: HashTable::new(),
            bytes: Vec::new(),
            starts: vec![0],
            hashes: Vec::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.hashes.len()
    }

    pub(super) fn row(&self, id: usize) -> &[u8] {
        &self.bytes[self.starts[id]..self.starts[id + 1]]
    }

    pub(super) fn hash(row: &[u8]) -> u64 {
        let mut hasher = KeyHasher::default();
        hasher.write(row);
        hasher.finish()
    }

    /// The group id of `row` (whose hash is `hash`), and whether the group is new.
    pub(super) fn get_or_insert(&mut self, row: &[u8], hash: u64) -> (u32, bool) {
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

    pub(super) fn reserve(&mut self, groups: usize) {
        let hashes = &self.hashes;
        self.ids.reserve(groups, |&id| hashes[id as usize]);
    }
}

/// The group ids of integer keys: an array indexed by `key - min` while the keys seen span a
/// range not much wider than their number (ids, dates, a column the file is sorted or
/// clustered by), else a hash table, which costs more per row (TPC-H Q18's 1.5 M order keys
/// of lineitem are such a range).
pub(super) enum IntegerIds {
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
pub(super) const DIRECT_SLOTS_PER_ROW: u64 = 4;
/// How many slots per group an `IntegerIds::Direct` wider than `DIRECT_SLOTS_ANYWAY` may have:
/// TPC-H's order keys use one value in four.
pub(super) const DIRECT_SLOTS_PER_GROUP: u64 = 16;
/// How many slots (256 KiB) an `IntegerIds::Direct` may have whatever its keys.
pub(super) const DIRECT_SLOTS_ANYWAY: u64 = 1 << 16;

impl IntegerIds {
    /// An empty table for the keys of `rows` rows.
    pub(super) fn new(rows: usize) -> Self {
        IntegerIds::Direct {
            min: 0,
            slots: Vec::new(),
            limit: (rows as u64 * DIRECT_SLOTS_PER_ROW).max(DIRECT_SLOTS_ANYWAY),
        }
    }

    /// The group id of `key`, `next` if it is new (and then recorded). `keys` are the groups'
    /// keys so far, in id order, for a direct table that turns into a hash table.
    #[inline]
    pub(super) fn get_or_insert(&mut self, key: i64, next: u32, keys: &[Option<i64>]) -> u32 {
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
    pub(super) fn grow(&mut self, key: i64, keys: &[Option<i64>]) {
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
    pub(super) fn widen(&mut self, rows: usize) {
        if let IntegerIds::Direct { limit, .. } = self {
            *limit = (*limit).max(rows as u64 * DIRECT_SLOTS_PER_ROW);
        }
    }
}

/// Whether a single key of type `t` is grouped as an i64.
pub(super) fn integer_key(t: &DataType) -> bool {
    t.is_integer()
        || matches!(
            t,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) | DataType::Duration(_)
        )
}

pub(super) fn as_i64(key: &ArrayRef) -> Result<ArrayRef, ArrowError> {
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
    pub(super) fn new(keys: &[DataType], rows: usize) -> Self {
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

    pub(super) fn len(&self) -> usize {
        match self {
            KeyTable::Single => 1,
            KeyTable::Integer { keys, .. } => keys.len(),
            KeyTable::Packed { keys, .. } => keys.len(),
            KeyTable::Encoded(keys) => keys.len(),
        }
    }

    /// The `Encoded` table of the groups whose keys are `key_parts` (per key expression, the
    /// key values of every group in group order, in parts), numbered as they are there.
    pub(super) fn encoded(
        key_parts: &[Vec<ArrayRef>],
        converter: &RowConverter,
    ) -> Result<Self, ArrowError> {
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
    pub(super) fn assign(
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
    pub(super) fn assign_packed_at(
        &mut self,
        keys: &[ArrayRef],
        picked: &[u32],
    ) -> Option<Assigned> {
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
    pub(super) fn merge(&mut self, other: KeyTable) -> (Vec<u32>, Vec<u32>) {
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
pub(super) fn assign_packed(
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
