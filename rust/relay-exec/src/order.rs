//! The order in which an epoch visits rows, and how it is split across ranks and workers.
//!
//! An order is a function from a position to a row, never an array: each consumer computes the
//! rows of its own positions, so an order costs O(1) memory and start-up whatever the row count.
//!
//! A global shuffle is a [`KeyedPermutation`]: a Feistel network over `k`-bit values, where
//! `2^k` is the smallest power of two `>= len` (and at least 4), keyed by `(seed, epoch)`. Each
//! round xors one part of the value with a keyed hash of the other part, so every round, and
//! the network, is a bijection of `0..2^k` whatever the hash. When `k` is odd the parts differ
//! by one bit (an unbalanced network) rather than the domain growing to the next even power,
//! so `2^k < 2 * len` (for `len >= 3`). A value that lands at or past `len` is fed through the
//! network again ("cycle-walking") until it falls inside: its cycle through a position `< len`
//! returns to that position, so the walk ends, and the values reached this way form a
//! permutation of `0..len`. At least half the domain is inside, so a walk takes fewer than two
//! passes on average.
//!
//! A block shuffle permutes blocks of rows with one such permutation and the positions inside
//! each window of the block sequence with another, keyed by the window.
//!
//! Everything is integer arithmetic (wrapping multiplies, shifts and xors), so the same seed and
//! epoch give the same order on every machine, and a resumed run regenerates exactly the order
//! it left.

use relay_plan::plan::SplitMix64;

/// How an epoch's rows are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shuffle {
    /// Rows in file order.
    Sequential,
    /// A uniformly random-looking permutation of all rows (a [`KeyedPermutation`]).
    Global,
    /// Blocks of `block_rows` consecutive rows in a random order, then rows shuffled inside
    /// windows of `buffer_rows` consecutive positions of that order. Each window reads only
    /// about `buffer_rows / block_rows` blocks (one more where the short last block shifts the
    /// windows against the blocks), so a file larger than memory is read in large sequential
    /// runs instead of one page per row.
    Block { block_rows: u64, buffer_rows: u64 },
}

impl Shuffle {
    /// Refuses a block shuffle with empty blocks or windows.
    pub fn check(self) -> Result<(), String> {
        match self {
            Shuffle::Block {
                block_rows,
                buffer_rows,
            } if block_rows == 0 || buffer_rows == 0 => {
                Err("block_size and shuffle_buffer must be positive".into())
            }
            _ => Ok(()),
        }
    }
}

/// Feistel rounds for a domain of `bits` bits (even, so rounds go in pairs that use the two
/// split sizes once each). Six rounds of a good round function look like a random permutation
/// on large domains; small domains need more, since each round changes few bits: with six
/// rounds the joint distribution over keys of three images is measurably off for 16 or 64
/// elements, and the distribution over all permutations of 5 or 8 elements needs about 24.
/// Only large domains are hot enough for rounds to matter, and they keep the minimum.
fn rounds_for(bits: u32) -> usize {
    match bits {
        0 => 0,
        1..=3 => MAX_ROUNDS,
        4..=16 => 8,
        _ => 6,
    }
}

const MAX_ROUNDS: usize = 24;

/// The SplitMix64 output function: a bijection of `u64` whose output bits each depend on every
/// input bit. Derives keys.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Positions mapped together by [`KeyedPermutation::apply_in_place`]: independent networks
/// interleaved round by round, so the multiplies of one hide the latency of another.
const LANES: usize = 4;

/// A keyed bijection of `0..len`: the same `(len, key)` gives the same permutation everywhere,
/// different keys give unrelated ones. O(1) memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedPermutation {
    len: u64,
    /// Bits of the high part in even rounds (odd rounds swap the two sizes).
    high_bits: u32,
    /// Bits of the low part, the round function's input, in even rounds.
    low_bits: u32,
    rounds: usize,
    round_keys: [u64; MAX_ROUNDS],
}

impl KeyedPermutation {
    pub fn new(len: u64, key: u64) -> Self {
        // Bits of the smallest power of two >= len, at least 2 so that each part has a bit (0
        // for len <= 1, where the network is the identity: no rounds).
        let bits = if len <= 1 {
            0
        } else {
            (64 - (len - 1).leading_zeros()).max(2)
        };
        let rounds = rounds_for(bits);
        // The key is mixed before the SplitMix64 stream is drawn, so that keys differing by the
        // stream's increment do not share round keys.
        let mut stream = SplitMix64(mix(key));
        let mut round_keys = [0; MAX_ROUNDS];
        round_keys[..rounds].fill_with(|| stream.next_u64());
        Self {
            len,
            high_bits: bits - bits / 2,
            low_bits: bits / 2,
            rounds,
            round_keys,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The image of `position` (`< len`).
    #[inline]
    pub fn apply(&self, position: u64) -> u64 {
        debug_assert!(
            position < self.len,
            "position {position} out of 0..{}",
            self.len
        );
        let mut value = self.network(position);
        while value >= self.len {
            value = self.network(value);
        }
        value
    }

    /// Replaces each value (`< len`) by its image: the same as [`apply`](Self::apply) on each,
    /// several times faster on long slices. Values are mapped several at a time, and the few that
    /// need another pass of the network are collected and walked together, so the CPU neither
    /// waits on one chain of multiplies nor mispredicts the walk's branch.
    pub fn apply_in_place(&self, values: &mut [u64]) {
        debug_assert!(
            values.iter().all(|&v| v < self.len),
            "values out of 0..{}",
            self.len
        );
        const CHUNK: usize = 256;
        for chunk in values.chunks_mut(CHUNK) {
            let mut groups = chunk.chunks_exact_mut(LANES);
            for group in &mut groups {
                self.network_lanes(
                    group
                        .try_into()
                        .expect("chunks_exact_mut gives LANES values"),
                );
            }
            for value in groups.into_remainder() {
                *value = self.network(*value);
            }
            // Indices into `chunk` (< CHUNK <= 256) of the values still past the end, compacted
            // without branches.
            let mut walking = [0u8; CHUNK];
            let mut count = 0;
            for (i, &value) in chunk.iter().enumerate() {
                walking[count] = i as u8;
                count += usize::from(value >= self.len);
            }
            while count > 0 {
                let mut still = 0;
                for start in (0..count).step_by(LANES) {
                    // A short last group repeats its last index; the repeats are not stored.
                    let index = |lane: usize| usize::from(walking[(start + lane).min(count - 1)]);
                    let indices: [usize; LANES] = std::array::from_fn(index);
                    let mut group = indices.map(|i| chunk[i]);
                    self.network_lanes(&mut group);
                    for (&i, &value) in indices.iter().zip(&group).take(count - start) {
                        chunk[i] = value;
                        // `still <= start + lane`: this overwrites only indices already read.
                        walking[still] = i as u8;
                        still += usize::from(value >= self.len);
                    }
                }
                count = still;
            }
        }
    }

    /// The position whose image is `value` (`< len`): `inverse(apply(p)) == p`.
    pub fn inverse(&self, value: u64) -> u64 {
        debug_assert!(value < self.len, "value {value} out of 0..{}", self.len);
        let mut position = self.network_inverse(value);
        while position >= self.len {
            position = self.network_inverse(position);
        }
        position
    }

    /// One Feistel round over `a + b` bits (`a`, `b` in `1..=32`; `mask_b` is `2^b - 1`): the
    /// high part (`a` bits) is xored with the keyed hash of the low part (`b` bits), and the
    /// value rotated so that the low part becomes the high part of the next round.
    #[inline(always)]
    fn round(value: u64, key: u64, a: u32, b: u32, mask_b: u64) -> u64 {
        let low = value & mask_b;
        let high = (value >> b) ^ Self::hash(low, key, a);
        (low << a) | high
    }

    /// The inverse of [`round`](Self::round) with the same `key`, `a` and `b` (`mask_a` is
    /// `2^a - 1`).
    #[inline(always)]
    fn round_inverse(value: u64, key: u64, a: u32, b: u32, mask_a: u64) -> u64 {
        let low = value >> a;
        let high = (value & mask_a) ^ Self::hash(low, key, a);
        (high << b) | low
    }

    /// The round function, `a` bits of a keyed hash of `low`: `low ^ key` through a multiply,
    /// xorshift, multiply hash (the shape of the SplitMix64 and murmur3 finalizers), of which
    /// the top `a` bits are taken, as they depend on every input bit. The finalizers' outer
    /// xorshifts are left out: the first only brings high input bits down (the input here has
    /// at most 32 bits), the last only improves the low output bits.
    #[inline(always)]
    fn hash(low: u64, key: u64, a: u32) -> u64 {
        let z = (low ^ key).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 32)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z >> (64 - a)
    }

    fn masks(&self) -> (u64, u64) {
        // Each part has at most 32 bits, so the shifts cannot overflow.
        ((1 << self.high_bits) - 1, (1 << self.low_bits) - 1)
    }

    /// One pass of the network over `0..2^bits`.
    #[inline(always)]
    fn network(&self, mut value: u64) -> u64 {
        let (a, b) = (self.high_bits, self.low_bits);
        let (mask_a, mask_b) = self.masks();
        for keys in self.round_keys[..self.rounds].chunks_exact(2) {
            value = Self::round(value, keys[0], a, b, mask_b);
            value = Self::round(value, keys[1], b, a, mask_a);
        }
        value
    }

    /// [`network`](Self::network) on `LANES` values, round by round.
    #[inline(always)]
    fn network_lanes(&self, values: &mut [u64; LANES]) {
        let (a, b) = (self.high_bits, self.low_bits);
        let (mask_a, mask_b) = self.masks();
        for keys in self.round_keys[..self.rounds].chunks_exact(2) {
            for value in values.iter_mut() {
                *value = Self::round(*value, keys[0], a, b, mask_b);
            }
            for value in values.iter_mut() {
                *value = Self::round(*value, keys[1], b, a, mask_a);
            }
        }
    }

    /// The inverse of [`network`](Self::network): the rounds undone in reverse order.
    fn network_inverse(&self, mut value: u64) -> u64 {
        let (a, b) = (self.high_bits, self.low_bits);
        let (mask_a, mask_b) = self.masks();
        for keys in self.round_keys[..self.rounds].chunks_exact(2).rev() {
            value = Self::round_inverse(value, keys[1], b, a, mask_b);
            value = Self::round_inverse(value, keys[0], a, b, mask_a);
        }
        value
    }
}

/// The key of an epoch's order: the seed and epoch mixed so that nearby seeds and epochs give
/// unrelated keys.
pub fn epoch_key(seed: u64, epoch: u64) -> u64 {
    let base = SplitMix64(seed).next_u64();
    SplitMix64(base ^ epoch.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

/// An independent key for part `what` of what `key` orders (the blocks, each window), so that
/// the parts' permutations are unrelated to each other.
fn sub_key(key: u64, what: u64) -> u64 {
    mix(key ^ mix(what.wrapping_add(0x9E37_79B9_7F4A_7C15)))
}

const BLOCKS_KEY: u64 = 1;
const WINDOWS_KEY: u64 = 2;

/// The rows of one epoch in visiting order, as a function of the position.
#[derive(Debug, Clone)]
pub enum EpochOrder {
    Sequential(u64),
    Global(KeyedPermutation),
    Block(BlockOrder),
}

impl EpochOrder {
    pub fn len(&self) -> u64 {
        match self {
            EpochOrder::Sequential(n) => *n,
            EpochOrder::Global(perm) => perm.len(),
            EpochOrder::Block(block) => block.num_rows,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row at position `i` (`< len`).
    pub fn position(&self, i: u64) -> u64 {
        debug_assert!(i < self.len(), "position {i} out of 0..{}", self.len());
        match self {
            EpochOrder::Sequential(_) => i,
            EpochOrder::Global(perm) => perm.apply(i),
            EpochOrder::Block(block) => block.position(i),
        }
    }

    /// Appends the rows at positions `range` of the order to `out`.
    pub fn extend_into(&self, range: std::ops::Range<u64>, out: &mut Vec<u64>) {
        debug_assert!(
            range.end <= self.len(),
            "range {range:?} out of 0..{}",
            self.len()
        );
        out.reserve(range.end.saturating_sub(range.start) as usize);
        match self {
            EpochOrder::Sequential(_) => out.extend(range),
            EpochOrder::Global(perm) => {
                let first = out.len();
                out.extend(range);
                perm.apply_in_place(&mut out[first..]);
            }
            EpochOrder::Block(block) => block.extend_into(range, out),
        }
    }
}

/// A [`Shuffle::Block`] order. Slot `s` of the block sequence visits block `blocks.apply(s)`;
/// every block holds `block_rows` rows except the last, which may be short and is visited at
/// slot `short_slot`. Positions are then permuted inside windows of `buffer_rows` positions of
/// the sequence, window `w` keyed by `sub_key(window_key, w)`.
#[derive(Debug, Clone)]
pub struct BlockOrder {
    num_rows: u64,
    block_rows: u64,
    buffer_rows: u64,
    blocks: KeyedPermutation,
    short_slot: u64,
    window_key: u64,
}

impl BlockOrder {
    fn position(&self, i: u64) -> u64 {
        let window = i / self.buffer_rows;
        let start = window * self.buffer_rows;
        self.sequence(start + self.window_permutation(window).apply(i - start))
    }

    fn extend_into(&self, range: std::ops::Range<u64>, out: &mut Vec<u64>) {
        let mut i = range.start;
        while i < range.end {
            let window = i / self.buffer_rows;
            let start = window * self.buffer_rows;
            let end = range.end.min(start.saturating_add(self.buffer_rows));
            let first = out.len();
            out.extend((i - start)..(end - start));
            self.window_permutation(window)
                .apply_in_place(&mut out[first..]);
            let indices = &mut out[first..];
            // The window spans a few slots of the block sequence. When they are fewer than the
            // positions asked for, their blocks are looked up once each; otherwise each
            // position's slot goes through the block permutation, a chunk at a time.
            let first_slot = self.slot_and_offset(start).0;
            let window_end = start.saturating_add(self.buffer_rows).min(self.num_rows);
            let last_slot = self.slot_and_offset(window_end - 1).0;
            if last_slot - first_slot < end - i {
                let mut blocks: Vec<u64> = (first_slot..=last_slot).collect();
                self.blocks.apply_in_place(&mut blocks);
                for value in indices {
                    let (slot, offset) = self.slot_and_offset(start + *value);
                    *value = blocks[(slot - first_slot) as usize] * self.block_rows + offset;
                }
            } else {
                for chunk in indices.chunks_mut(256) {
                    let mut slots = [0u64; 256];
                    let slots = &mut slots[..chunk.len()];
                    // `chunk` holds the offsets while the slots go through the permutation.
                    for (value, slot) in chunk.iter_mut().zip(slots.iter_mut()) {
                        (*slot, *value) = self.slot_and_offset(start + *value);
                    }
                    self.blocks.apply_in_place(slots);
                    for (value, &block) in chunk.iter_mut().zip(slots.iter()) {
                        *value += block * self.block_rows;
                    }
                }
            }
            i = end;
        }
    }

    /// The permutation of the positions of window `window` (which starts at `window *
    /// buffer_rows`; the last window may be short).
    fn window_permutation(&self, window: u64) -> KeyedPermutation {
        let start = window * self.buffer_rows;
        KeyedPermutation::new(
            self.buffer_rows.min(self.num_rows - start),
            sub_key(self.window_key, window),
        )
    }

    /// The row at index `q` of the block sequence (the permuted blocks laid end to end).
    fn sequence(&self, q: u64) -> u64 {
        let (slot, offset) = self.slot_and_offset(q);
        self.blocks.apply(slot) * self.block_rows + offset
    }

    /// The slot of the block sequence that index `q` falls in, and its offset in that block.
    #[inline]
    fn slot_and_offset(&self, q: u64) -> (u64, u64) {
        let block_rows = self.block_rows;
        let last_len = self.num_rows - (self.blocks.len() - 1) * block_rows;
        // Before and inside the short block, slots and offsets are those of full blocks. Past
        // it, the short block takes one slot and `last_len` indices. (No branch: where the short
        // block lies is random, so a branch would be mispredicted.)
        let past_short = u64::from(q >= self.short_slot * block_rows + last_len);
        let q = q - past_short * last_len;
        (q / block_rows + past_short, q % block_rows)
    }
}

/// The order of `num_rows` rows for `epoch`.
pub fn epoch_order(
    num_rows: u64,
    shuffle: Shuffle,
    seed: u64,
    epoch: u64,
) -> Result<EpochOrder, String> {
    let key = epoch_key(seed, epoch);
    match shuffle {
        Shuffle::Sequential => Ok(EpochOrder::Sequential(num_rows)),
        Shuffle::Global => Ok(EpochOrder::Global(KeyedPermutation::new(num_rows, key))),
        Shuffle::Block {
            block_rows,
            buffer_rows,
        } => {
            shuffle.check()?;
            let num_blocks = num_rows.div_ceil(block_rows);
            let blocks = KeyedPermutation::new(num_blocks, sub_key(key, BLOCKS_KEY));
            let short_slot = if num_blocks == 0 {
                0
            } else {
                blocks.inverse(num_blocks - 1)
            };
            let window_key = sub_key(key, WINDOWS_KEY);
            Ok(EpochOrder::Block(BlockOrder {
                num_rows,
                block_rows,
                buffer_rows,
                blocks,
                short_slot,
                window_key,
            }))
        }
    }
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

    fn positions(order: &EpochOrder) -> Vec<u64> {
        let mut out = Vec::new();
        order.extend_into(0..order.len(), &mut out);
        out
    }

    fn is_bijection(perm: &KeyedPermutation) -> bool {
        let mut seen = vec![false; perm.len() as usize];
        for p in 0..perm.len() {
            let v = perm.apply(p);
            if v >= perm.len()
                || std::mem::replace(&mut seen[v as usize], true)
                || perm.inverse(v) != p
            {
                return false;
            }
        }
        true
    }

    #[test]
    fn keyed_permutations_are_bijections() {
        for len in [
            0u64, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 100, 1000, 4097, 65537,
        ] {
            for key in [0u64, 1, 2, 0x9E37_79B9_7F4A_7C15, u64::MAX] {
                assert!(
                    is_bijection(&KeyedPermutation::new(len, key)),
                    "len={len} key={key}"
                );
            }
        }
    }

    #[test]
    fn applying_in_place_matches_applying_one_at_a_time() {
        // Lengths just past a power of two walk the most; slices not a multiple of the lanes or
        // chunks, and values out of order, exercise the remainders.
        for len in [2u64, 3, 5, 17, 1000, (1 << 16) + 1, (1 << 40) + 3] {
            let perm = KeyedPermutation::new(len, len ^ 5);
            let mut values: Vec<u64> = (0..1031u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % len)
                .collect();
            let expected: Vec<u64> = values.iter().map(|&v| perm.apply(v)).collect();
            perm.apply_in_place(&mut values);
            assert_eq!(values, expected, "len={len}");
        }
    }

    #[test]
    fn different_keys_give_different_permutations() {
        for len in [10u64, 1000, 65537] {
            let image = |key| {
                (0..len)
                    .map(|p| KeyedPermutation::new(len, key).apply(p))
                    .collect::<Vec<_>>()
            };
            let images: Vec<_> = (0..8).map(image).collect();
            for i in 0..images.len() {
                for j in 0..i {
                    assert_ne!(images[i], images[j], "len={len} keys {i} and {j}");
                }
            }
        }
        // Both permutations of two elements occur.
        let swaps = (0..64)
            .filter(|&key| KeyedPermutation::new(2, key).apply(0) == 1)
            .count();
        assert!((16..=48).contains(&swaps), "{swaps} swaps out of 64");
    }

    #[test]
    fn keyed_permutations_look_uniform() {
        // Where position 0 goes, over many keys: chi-square with 63 degrees of freedom, whose
        // 99.99th percentile is about 112.
        let (len, keys) = (64u64, 20_000u64);
        let mut counts = vec![0u64; len as usize];
        for key in 0..keys {
            counts[KeyedPermutation::new(len, key).apply(0) as usize] += 1;
        }
        let expected = keys as f64 / len as f64;
        let chi2: f64 = counts
            .iter()
            .map(|&c| (c as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 112.0, "chi-square {chi2}: {counts:?}");

        // A uniform permutation of n moves a position by (n^2 - 1) / 3n on average.
        let len = 1000u64;
        for key in 0..4 {
            let perm = KeyedPermutation::new(len, key);
            let mean = (0..len).map(|p| perm.apply(p).abs_diff(p)).sum::<u64>() as f64 / len as f64;
            assert!(
                (300.0..367.0).contains(&mean),
                "key {key}: mean displacement {mean}"
            );
        }
    }

    #[test]
    fn large_permutations_stay_in_range_and_distinct() {
        for len in [(1u64 << 32) + 1, (1 << 40) + 12345, 1 << 63, u64::MAX] {
            let perm = KeyedPermutation::new(len, 7);
            let sample: Vec<u64> = (0..10_000u64)
                .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % len)
                .collect();
            let mut images: Vec<u64> = sample.iter().map(|&p| perm.apply(p)).collect();
            for (&p, &image) in sample.iter().zip(&images) {
                assert!(image < len);
                assert_eq!(perm.inverse(image), p);
            }
            images.sort_unstable();
            images.dedup();
            assert_eq!(images.len(), 10_000, "len={len}");
        }
    }

    #[test]
    fn large_orders_need_no_arrays() {
        let n = (1u64 << 40) + 7;
        for shuffle in [
            Shuffle::Global,
            Shuffle::Block {
                block_rows: 1000,
                buffer_rows: 1 << 16,
            },
        ] {
            let order = epoch_order(n, shuffle, 1, 2).unwrap();
            let mut rows = Vec::new();
            order.extend_into(n - 70_000..n, &mut rows);
            for (i, &row) in (n - 70_000..n).zip(&rows) {
                assert!(row < n);
                assert_eq!(order.position(i), row);
            }
            rows.sort_unstable();
            rows.dedup();
            assert_eq!(rows.len(), 70_000, "{shuffle:?}");
        }
    }

    #[test]
    fn orders_are_permutations() {
        for shuffle in [
            Shuffle::Sequential,
            Shuffle::Global,
            Shuffle::Block {
                block_rows: 7,
                buffer_rows: 20,
            },
            Shuffle::Block {
                block_rows: 100,
                buffer_rows: 30,
            },
            Shuffle::Block {
                block_rows: 1,
                buffer_rows: 1,
            },
            Shuffle::Block {
                block_rows: 64,
                buffer_rows: 1 << 20,
            },
        ] {
            for n in [0u64, 1, 2, 3, 10, 13, 999, 1000, 1 << 16, (1 << 16) + 3] {
                let order = epoch_order(n, shuffle, 3, 1).unwrap();
                let rows = positions(&order);
                assert!(
                    rows.iter()
                        .enumerate()
                        .all(|(i, &row)| order.position(i as u64) == row),
                    "{shuffle:?} n={n}"
                );
                let mut seen = rows;
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "{shuffle:?} n={n}");
            }
        }
    }

    #[test]
    fn ranges_concatenate() {
        // Short pieces map each position's block; long ones look a window's blocks up once.
        for (n, shuffle) in [
            (
                1003,
                Shuffle::Block {
                    block_rows: 10,
                    buffer_rows: 64,
                },
            ),
            (
                1003,
                Shuffle::Block {
                    block_rows: 1,
                    buffer_rows: 300,
                },
            ),
            (1003, Shuffle::Global),
        ] {
            let order = epoch_order(n, shuffle, 5, 2).unwrap();
            for piece in [1, 3, 37, 500] {
                let mut pieces = Vec::new();
                for start in (0..n).step_by(piece) {
                    order.extend_into(start..(start + piece as u64).min(n), &mut pieces);
                }
                assert_eq!(pieces, positions(&order), "{shuffle:?} pieces of {piece}");
            }
        }
    }

    #[test]
    fn same_seed_and_epoch_give_the_same_order() {
        for shuffle in [
            Shuffle::Global,
            Shuffle::Block {
                block_rows: 10,
                buffer_rows: 30,
            },
        ] {
            let a = positions(&epoch_order(500, shuffle, 42, 2).unwrap());
            assert_eq!(a, positions(&epoch_order(500, shuffle, 42, 2).unwrap()));
            assert_ne!(a, positions(&epoch_order(500, shuffle, 42, 3).unwrap()));
            assert_ne!(a, positions(&epoch_order(500, shuffle, 43, 2).unwrap()));
        }
        // Pinned: the orders must not change across versions or machines.
        assert_eq!(
            &positions(&epoch_order(10, Shuffle::Global, 0, 0).unwrap()),
            &[2, 5, 0, 4, 7, 1, 9, 6, 8, 3]
        );
        let block = Shuffle::Block {
            block_rows: 3,
            buffer_rows: 4,
        };
        assert_eq!(
            &positions(&epoch_order(10, block, 0, 0).unwrap()),
            &[6, 8, 7, 0, 1, 2, 3, 9, 5, 4]
        );
    }

    #[test]
    fn block_windows_read_few_blocks() {
        let distinct_blocks = |window: &[u64]| {
            let mut blocks: Vec<u64> = window.iter().map(|p| p / 100).collect();
            blocks.sort_unstable();
            blocks.dedup();
            blocks.len()
        };
        let shuffle = Shuffle::Block {
            block_rows: 100,
            buffer_rows: 400,
        };
        for seed in 0..4 {
            // Whole blocks: windows align with blocks.
            let order = positions(&epoch_order(10_000, shuffle, seed, 0).unwrap());
            assert!(order.chunks(400).all(|window| distinct_blocks(window) == 4));
            // A short block shifts the windows after it by part of a block.
            let order = positions(&epoch_order(10_050, shuffle, seed, 0).unwrap());
            assert!(order.chunks(400).all(|window| distinct_blocks(window) <= 5));
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
