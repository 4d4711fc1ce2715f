//! The order in which an epoch visits rows, and how it is split across ranks and workers.
//!
//! Orders are generated from `(seed, epoch)` with SplitMix64 and integer arithmetic only, so
//! the same seed and epoch give the same order on every machine, and a resumed run can
//! regenerate the exact order it left. Positions are stored as `u32` when the frame has fewer
//! than 2^32 rows (half the memory of `u64`: 80 MB for 20 M rows).

use relay_plan::plan::SplitMix64;

/// How an epoch's rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shuffle {
    /// Rows in file order.
    Sequential,
    /// A uniformly random permutation of all rows (Fisher-Yates).
    Global,
    /// Blocks of `block_rows` consecutive rows in a random order, then rows shuffled inside
    /// windows of `buffer_rows` consecutive positions of that order. Each window reads only
    /// `buffer_rows / block_rows` blocks, so a file larger than memory is read in large
    /// sequential runs instead of one page per row.
    Block { block_rows: u64, buffer_rows: u64 },
}

/// The row positions of one epoch, in visiting order.
#[derive(Debug, Clone)]
pub enum Order {
    Sequential(u64),
    Small(Vec<u32>),
    Large(Vec<u64>),
}

impl Order {
    pub fn len(&self) -> u64 {
        match self {
            Order::Sequential(n) => *n,
            Order::Small(v) => v.len() as u64,
            Order::Large(v) => v.len() as u64,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the positions `range` of the order to `out`.
    pub fn extend_into(&self, range: std::ops::Range<u64>, out: &mut Vec<u64>) {
        let (start, end) = (range.start as usize, range.end as usize);
        match self {
            Order::Sequential(_) => out.extend(range),
            Order::Small(v) => out.extend(v[start..end].iter().map(|&p| u64::from(p))),
            Order::Large(v) => out.extend_from_slice(&v[start..end]),
        }
    }
}

/// The generator of an epoch: one stream per (seed, epoch), the epoch mixed in through a
/// first draw so that nearby seeds and epochs give unrelated streams.
fn epoch_rng(seed: u64, epoch: u64) -> SplitMix64 {
    let base = SplitMix64(seed).next_u64();
    let mut mixed = SplitMix64(base ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03));
    SplitMix64(mixed.next_u64())
}

/// Fisher-Yates shuffle of `values` from `rng`.
fn shuffle_in_place<T>(values: &mut [T], rng: &mut SplitMix64) {
    for i in (1..values.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        values.swap(i, j);
    }
}

/// The order of `num_rows` rows for `epoch`.
pub fn epoch_order(num_rows: u64, shuffle: Shuffle, seed: u64, epoch: u64) -> Result<Order, String> {
    if shuffle == Shuffle::Sequential {
        return Ok(Order::Sequential(num_rows));
    }
    let mut rng = epoch_rng(seed, epoch);
    if num_rows <= u64::from(u32::MAX) + 1 {
        let mut order: Vec<u32> = (0..num_rows).map(|p| p as u32).collect();
        permute(&mut order, num_rows, shuffle, &mut rng, |p| p as u32)?;
        Ok(Order::Small(order))
    } else {
        let mut order: Vec<u64> = (0..num_rows).collect();
        permute(&mut order, num_rows, shuffle, &mut rng, |p| p)?;
        Ok(Order::Large(order))
    }
}

fn permute<T: Copy>(order: &mut [T], num_rows: u64, shuffle: Shuffle, rng: &mut SplitMix64, of: impl Fn(u64) -> T) -> Result<(), String> {
    match shuffle {
        Shuffle::Sequential => {}
        Shuffle::Global => shuffle_in_place(order, rng),
        Shuffle::Block { block_rows, buffer_rows } => {
            if block_rows == 0 || buffer_rows == 0 {
                return Err("block_size and shuffle_buffer must be positive".into());
            }
            let blocks = num_rows.div_ceil(block_rows);
            let mut block_order: Vec<u64> = (0..blocks).collect();
            shuffle_in_place(&mut block_order, rng);
            let mut position = 0usize;
            for block in block_order {
                let start = block * block_rows;
                for row in start..(start + block_rows).min(num_rows) {
                    order[position] = of(row);
                    position += 1;
                }
            }
            for window in order.chunks_mut(buffer_rows.min(num_rows.max(1)) as usize) {
                shuffle_in_place(window, rng);
            }
        }
    }
    Ok(())
}

/// The positions of the order that shard `shard` of `shards` visits: a contiguous range, the
/// shards' sizes differing by at most one, together covering every position exactly once.
/// Contiguous (rather than every `shards`-th position) so that a block order stays sequential
/// within a shard.
pub fn shard_range(len: u64, shard: u64, shards: u64) -> std::ops::Range<u64> {
    let bound = |s: u64| (u128::from(len) * u128::from(s) / u128::from(shards.max(1))) as u64;
    bound(shard)..bound(shard + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions(order: &Order) -> Vec<u64> {
        let mut out = Vec::new();
        order.extend_into(0..order.len(), &mut out);
        out
    }

    #[test]
    fn orders_are_permutations() {
        for shuffle in [
            Shuffle::Sequential,
            Shuffle::Global,
            Shuffle::Block { block_rows: 7, buffer_rows: 20 },
        ] {
            for n in [0u64, 1, 2, 10, 1000] {
                let mut seen = positions(&epoch_order(n, shuffle, 3, 1).unwrap());
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{shuffle:?} n={n}");
            }
        }
    }

    #[test]
    fn same_seed_and_epoch_give_the_same_order() {
        let a = positions(&epoch_order(500, Shuffle::Global, 42, 2).unwrap());
        assert_eq!(a, positions(&epoch_order(500, Shuffle::Global, 42, 2).unwrap()));
        assert_ne!(a, positions(&epoch_order(500, Shuffle::Global, 42, 3).unwrap()));
        assert_ne!(a, positions(&epoch_order(500, Shuffle::Global, 43, 2).unwrap()));
        // Pinned: the order must not change across versions or machines.
        assert_eq!(&positions(&epoch_order(10, Shuffle::Global, 0, 0).unwrap()), &[4, 7, 0, 5, 9, 3, 6, 2, 8, 1]);
    }

    #[test]
    fn block_windows_read_few_blocks() {
        let order = positions(&epoch_order(10_000, Shuffle::Block { block_rows: 100, buffer_rows: 400 }, 9, 0).unwrap());
        for window in order.chunks(400) {
            let mut blocks: Vec<u64> = window.iter().map(|p| p / 100).collect();
            blocks.sort_unstable();
            blocks.dedup();
            assert_eq!(blocks.len(), 4);
        }
    }

    #[test]
    fn shards_cover_once() {
        for len in [0u64, 1, 7, 100] {
            for shards in [1u64, 2, 3, 8] {
                let mut next = 0;
                for s in 0..shards {
                    let r = shard_range(len, s, shards);
                    assert_eq!(r.start, next);
                    assert!(r.end - r.start <= len / shards + 1);
                    next = r.end;
                }
                assert_eq!(next, len);
            }
        }
    }
}
