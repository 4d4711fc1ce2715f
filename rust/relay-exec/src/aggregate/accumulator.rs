//! The accumulators: what each aggregation keeps per group while rows stream by, how a
//! task's accumulators merge into another's, and the column they finish as.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array, UInt32Array, UInt64Array,
    make_comparator, new_null_array,
};
use arrow::compute::{SortOptions, cast, concat, take};
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use relay_plan::{AggFunc, Interpolation, Quantile};

use super::quantiles::quantiles;
use super::sums::{add_decimals, add_per_group, decimal_overflow};

/// What an aggregation keeps per group while rows stream by.
pub(super) enum Accumulator {
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

pub(super) const NO_ROW: u32 = u32::MAX;

impl Accumulator {
    pub(super) fn new(
        func: AggFunc,
        input: &DataType,
        output: &DataType,
    ) -> Result<Self, ArrowError> {
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
    pub(super) fn update_at(
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
    pub(super) fn update(
        &mut self,
        values: &ArrayRef,
        ids: &[u32],
        groups: usize,
    ) -> Result<(), ArrowError> {
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
    pub(super) fn merge(
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
    pub(super) fn finish(self, groups: usize, output: &DataType) -> Result<ArrayRef, ArrowError> {
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
