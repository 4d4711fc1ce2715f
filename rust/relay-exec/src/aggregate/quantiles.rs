//! Medians and quantiles per group, selected from each group's collected values.

use arrow::array::Float64Array;
use rayon::prelude::*;
use relay_plan::{Interpolation, Quantile};

use crate::pool::pool;

/// Per group: the `quantile` of its collected values (null for a group without any).
///
/// The values are bucketed by group (a counting sort on the group id), then each group's
/// bucket is partially ordered with a selection, not sorted: O(n) per group on average. NaN is
/// above every number, as in a float sort.
pub(super) fn quantiles(
    values: Vec<f64>,
    ids: &[u32],
    groups: usize,
    quantile: Quantile,
) -> Float64Array {
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
pub(super) fn quantile_of(values: &mut [f64], quantile: Quantile) -> Option<f64> {
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
