//! Partials, one per run of morsels, and how they merge in run order: one after another, or
//! key tables in parallel by hash partition once there are many groups.

use std::hash::{BuildHasher, BuildHasherDefault};

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::{concat, take};
use arrow::error::ArrowError;
use rayon::prelude::*;

use super::accumulator::Accumulator;
use super::groups::{IntegerIds, KeyTable};
use crate::keys::{KeyHasher, KeyMap};
use crate::pool::pool;

/// One task's share of the aggregation: its groups, their keys and their accumulators.
pub(super) struct Partial {
    pub(super) table: KeyTable,
    /// Per key expression: the key values of this task's groups, in group order, in parts.
    pub(super) key_parts: Vec<Vec<ArrayRef>>,
    pub(super) accumulators: Vec<Accumulator>,
}

impl Partial {
    /// Folds the keys and accumulators of `other` (a later run) into this partial:
    /// `mapping[g]` is the id here of `other`'s group `g`, `new_groups` those of its groups
    /// that are new here, in order, and there are `groups` groups here after the merge.
    pub(super) fn fold(
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
pub(super) fn widen_direct(partials: &mut [Partial], rows: usize) -> bool {
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
pub(super) const PARALLEL_MERGE_GROUPS: usize = 1 << 16;

/// The keys of an `Integer` or `Packed` table's groups as `u128`s (a null integer as 2^64,
/// which no i64 key becomes); None for other tables.
pub(super) fn wide_keys(table: &KeyTable) -> Option<Vec<u128>> {
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
pub(super) fn merge_wide(keys: &[Vec<u128>]) -> (Vec<Vec<u32>>, Vec<Vec<u32>>, usize) {
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
