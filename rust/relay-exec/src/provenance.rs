//! Provenance: whether exporting a column of a plan is a view or a copy, and why.
//!
//! `explain()`, `Column.copy_reason`, exports with `zero_copy=True` and `relay inspect` all ask
//! this module, so they always give the same answer. It is decided from the optimized plan and
//! the files' metadata (record batch headers, decoded as views): nothing is filtered, gathered
//! or computed, so a verdict costs the same for a plan over a billion rows as over ten.
//!
//! The walk follows the column down the plan, from the output to where its data lives:
//!
//! - Nodes that produce new rows decide at once, and the verdict names the operation: a filter
//!   (a `Filter` node or a scan's filters) or `take()` / `sample()` selects rows, `sort()`
//!   reorders them, `unique()` and semi / anti joins select them, other joins gather the
//!   matched rows, `group_by().agg()` and expressions compute new arrays. The nearest such
//!   node to the output names the copy.
//! - Columns read from decoded formats (Parquet, CSV, NDJSON), from several files, or from
//!   partition folder names are copies already: a filter or take above the read does not
//!   change that, and the verdict names the format (the other operations name themselves).
//! - `select` / `alias` follow the column under its source name; `slice` narrows the rows;
//!   `view` reinterprets the arrays' bits as another type of the same width.
//! - A column ends in arrays that already exist: the chunks of a mapped file (one per record
//!   batch, decoded from the headers), the batches of a `Memory` node (collected or
//!   concatenated), or an array attached by `with_column` / `from_numpy` (cut along the
//!   chunks of the rows it is attached to, as the executor cuts it). An array the caller's
//!   data had to be copied into when attached is a copy, with the reason given then.
//! - Those arrays are a view when they are one chunk of a fixed-width type without nulls
//!   whose values lie in their home: the file's mapping (collected views of the file are
//!   still views of it) or the attached array. Otherwise `zero_copy_blocker` says why not; a
//!   copy made while decoding (a compressed or misaligned record batch) is named as well.
//!   Arrays in memory that would be a view but for where they live are said to be copies
//!   because the frame was collected (or made) into memory.

use std::fmt;
use std::ops::Range;

use arrow::array::{Array, ArrayRef};
use arrow::datatypes::DataType;
use relay_plan::{Expr, LogicalPlan, PlanError};
use relay_storage::{DecodedColumn, slice_rows};

use crate::dense::zero_copy_blocker;
use crate::error::ExecError;
use crate::eval::same_width_integer_cast;
use crate::nodes::reinterpret_array;

/// What exporting a column gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A view of the mapped file.
    MappedView,
    /// A view of an array attached by reference; `values` are the addresses of its values.
    AttachedView { values: Range<usize> },
    /// A copy, and why.
    Copy(String),
}

impl Verdict {
    /// Why exporting copies; None for a view.
    pub fn copy_reason(&self) -> Option<&str> {
        match self {
            Verdict::Copy(reason) => Some(reason),
            Verdict::MappedView | Verdict::AttachedView { .. } => None,
        }
    }
}

impl fmt::Display for Verdict {
    /// The verdict as `explain()` prints it: "view of ..." or "copy: why".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::MappedView => f.write_str("view of the mapped file"),
            Verdict::AttachedView { .. } => {
                f.write_str("view of the array attached (referenced, not copied)")
            }
            Verdict::Copy(reason) => write!(f, "copy: {reason}"),
        }
    }
}

const FILTER: &str = "a filter selected rows: they are gathered into a copy";
const TAKE: &str = "take() or sample() picked rows: they are gathered into a copy";
const SORT: &str = "sort() reordered the rows: they are gathered into a copy";
const UNIQUE: &str = "unique() selected rows: they are gathered into a copy";
const SEMI_JOIN: &str = "a semi or anti join() selected rows: they are gathered into a copy";
const JOIN: &str = "join() gathered the matched rows into new memory";
const AGGREGATE: &str = "group_by().agg() computed the column into new memory";
const COMPUTED: &str = "computed by an expression, evaluated into new memory";
const PIECES: &str = "the rows are decoded from files piece by piece, and the array attached is \
                      cut along the pieces";

/// Any address: for asking whether arrays have a view's layout wherever they live.
const ANYWHERE: Range<usize> = 0..usize::MAX;

/// Whether exporting column `name` of `plan` (as it runs: optimized) is a view or a copy.
/// `mapped` is the address range of the frame's mapped file (empty for a frame in memory).
/// An error is the one reading the column would raise (a damaged record batch header).
pub fn column_verdict(
    plan: &LogicalPlan,
    name: &str,
    mapped: &Range<usize>,
) -> Result<Verdict, ExecError> {
    let schema = plan.schema()?;
    let data_type = schema
        .field_with_name(name)
        .map_err(|_| missing(name))?
        .data_type()
        .clone();
    Ok(match origin(plan, name, &mut Vec::new())? {
        Origin::Decided(reason) => Verdict::Copy(reason),
        Origin::Arrays { chunks, home } => arrays_verdict(chunks, &data_type, home, mapped),
    })
}

/// The memory an export of column `name` of `plan` may point into without a copy: the array
/// attached by reference that holds the column (the `values` of its `AttachedView`), else the
/// file's mapping `mapped`. Follows the column through the plan without reading any file.
pub fn export_range(plan: &LogicalPlan, name: &str, mapped: &Range<usize>) -> Range<usize> {
    match plan {
        LogicalPlan::Project { input, exprs } => {
            let mut expr = exprs.iter().find(|expr| expr.output_name() == name);
            while let Some(Expr::Alias { input, .. }) = expr {
                expr = Some(input);
            }
            match expr {
                Some(Expr::Column(source)) => export_range(input, source, mapped),
                _ => mapped.clone(),
            }
        }
        LogicalPlan::Slice { input, .. } | LogicalPlan::Reinterpret { input, .. } => {
            export_range(input, name, mapped)
        }
        LogicalPlan::AttachColumns { input, columns } => {
            match columns.iter().find(|column| column.name == name) {
                None => export_range(input, name, mapped),
                Some(column) if column.copied.is_none() => {
                    values_range(&column.array).unwrap_or(0..0)
                }
                Some(_) => mapped.clone(),
            }
        }
        _ => mapped.clone(),
    }
}

/// The verdict `explain()` prints for column `name` of `plan`: "view of ..." or "copy: why".
pub fn explain_column(plan: &LogicalPlan, name: &str, mapped: &Range<usize>) -> String {
    match column_verdict(plan, name, mapped) {
        Ok(verdict) => verdict.to_string(),
        Err(error) => format!("copy: the column cannot be read as it is ({error})"),
    }
}

/// Whether exporting the decoded chunks of a mapped file's column (of type `data_type`) is a
/// view of the mapping `mapped`, or a copy.
pub fn chunks_verdict(
    chunks: &[DecodedColumn],
    data_type: &DataType,
    mapped: &Range<usize>,
) -> Verdict {
    arrays_verdict(chunks.to_vec(), data_type, Home::Mapping, mapped)
}

/// Where existing arrays live, for telling a view from a copy.
enum Home {
    /// The chunks of a mapped file.
    Mapping,
    /// The batches of a `Memory` node, and the call that made it (None: `collect()`).
    Memory(Option<String>),
    /// An array attached by reference, with the addresses of its values.
    Attached(Range<usize>),
}

/// Where a column's data comes from, as far as exporting it is concerned.
enum Origin {
    /// A node decided: the column is a copy, for this reason.
    Decided(String),
    /// Arrays that already exist, after the slices and reinterpretations above them.
    Arrays {
        chunks: Vec<DecodedColumn>,
        home: Home,
    },
}

fn missing(name: &str) -> ExecError {
    ExecError::Plan(PlanError::Invalid(format!(
        "no column {name:?} in the plan"
    )))
}

/// Rows of `chunks` taken together, cut by `slices` (offset, length), outermost first: the
/// innermost slice applies first, as the executor applies them.
fn sliced(chunks: Vec<DecodedColumn>, slices: &[(u64, u64)]) -> Vec<DecodedColumn> {
    slices
        .iter()
        .rev()
        .fold(chunks, |chunks, &(offset, length)| {
            slice_rows(
                chunks,
                offset,
                length,
                |chunk| chunk.array.len(),
                |chunk, skip, rows| DecodedColumn {
                    array: chunk.array.slice(skip, rows),
                    copy_reason: chunk.copy_reason,
                },
            )
        })
}

/// Where column `name` of `plan` comes from; `slices` are the (offset, length) of the slices
/// above `plan`, outermost first.
fn origin(
    plan: &LogicalPlan,
    name: &str,
    slices: &mut Vec<(u64, u64)>,
) -> Result<Origin, ExecError> {
    let decided = |reason: &str| Ok(Origin::Decided(reason.to_owned()));
    match plan {
        LogicalPlan::Scan { filters, .. } if !filters.is_empty() => decided(FILTER),
        LogicalPlan::Filter { .. } => Ok(Origin::Decided(
            decoded_read(plan, name).unwrap_or(FILTER.into()),
        )),
        LogicalPlan::Take { .. } => Ok(Origin::Decided(
            decoded_read(plan, name).unwrap_or(TAKE.into()),
        )),
        LogicalPlan::Read { .. } => Ok(Origin::Decided(
            decoded_read(plan, name).unwrap_or_default(),
        )),
        LogicalPlan::Sort { .. } => decided(SORT),
        LogicalPlan::Distinct { .. } => decided(UNIQUE),
        LogicalPlan::Aggregate { .. } => decided(AGGREGATE),
        LogicalPlan::Join { how, .. } if how.filters_left() => decided(SEMI_JOIN),
        LogicalPlan::Join { .. } => decided(JOIN),
        LogicalPlan::Scan { table, .. } => Ok(Origin::Arrays {
            chunks: sliced(table.column(name)?.chunks()?, slices),
            home: Home::Mapping,
        }),
        LogicalPlan::Memory {
            schema,
            batches,
            origin,
        } => {
            let index = schema.index_of(name)?;
            let chunks = batches
                .iter()
                .map(|batch| DecodedColumn {
                    array: batch.column(index).clone(),
                    copy_reason: None,
                })
                .collect();
            Ok(Origin::Arrays {
                chunks: sliced(chunks, slices),
                home: Home::Memory(origin.as_deref().map(str::to_owned)),
            })
        }
        LogicalPlan::Project { input, exprs } => {
            let mut expr = exprs
                .iter()
                .find(|expr| expr.output_name() == name)
                .ok_or_else(|| missing(name))?;
            while let Expr::Alias { input, .. } = expr {
                expr = input;
            }
            match expr {
                Expr::Column(source) => origin(input, source, slices),
                // A same-width integer cast whose values all fit shares its input's buffers
                // (see `eval::same_width_integer_cast`): one pass over the values decides.
                Expr::Cast { input: cast, to } => match cast.as_ref() {
                    Expr::Column(source) => {
                        let Origin::Arrays { chunks, home } = origin(input, source, slices)? else {
                            return decided(COMPUTED);
                        };
                        let cast: Option<Vec<DecodedColumn>> = chunks
                            .into_iter()
                            .map(|chunk| {
                                Some(DecodedColumn {
                                    array: same_width_integer_cast(chunk.array.as_ref(), to)?,
                                    copy_reason: chunk.copy_reason,
                                })
                            })
                            .collect();
                        match cast {
                            Some(chunks) => Ok(Origin::Arrays { chunks, home }),
                            None => decided(COMPUTED),
                        }
                    }
                    _ => decided(COMPUTED),
                },
                _ => decided(COMPUTED),
            }
        }
        LogicalPlan::Slice {
            input,
            offset,
            length,
        } => {
            slices.push((*offset, *length));
            origin(input, name, slices)
        }
        LogicalPlan::Reinterpret { input, columns } => {
            let found = origin(input, name, slices)?;
            match (found, columns.iter().find(|(column, _)| column == name)) {
                (Origin::Arrays { chunks, home }, Some((_, to))) => Ok(Origin::Arrays {
                    chunks: chunks
                        .into_iter()
                        .map(|chunk| {
                            Ok(DecodedColumn {
                                array: reinterpret_array(&chunk.array, to)?,
                                copy_reason: chunk.copy_reason,
                            })
                        })
                        .collect::<Result<_, ExecError>>()?,
                    home,
                }),
                (found, _) => Ok(found),
            }
        }
        LogicalPlan::AttachColumns { input, columns } => {
            let Some(column) = columns.iter().find(|column| column.name == name) else {
                return origin(input, name, slices);
            };
            if let Some(note) = &column.copied {
                return Ok(Origin::Decided(format!(
                    "the array was copied when attached ({note})"
                )));
            }
            // The executor cuts the array along the chunks of the rows it is attached to.
            let Some(rows) = chunk_rows(input) else {
                return decided(PIECES);
            };
            let mut offset = 0;
            let chunks = rows
                .into_iter()
                .map(|rows| {
                    let array = column.array.slice(offset, rows);
                    offset += rows;
                    DecodedColumn {
                        array,
                        copy_reason: None,
                    }
                })
                .collect();
            let values = values_range(&column.array).unwrap_or(0..0);
            Ok(Origin::Arrays {
                chunks: sliced(chunks, slices),
                home: Home::Attached(values),
            })
        }
    }
}

/// The row counts of the chunks `plan` yields when executed, for a plan whose rows are a
/// file's or memory's in order (what arrays are attached to); None when they are only known
/// by reading (decoded files) or the plan is not such a plan.
fn chunk_rows(plan: &LogicalPlan) -> Option<Vec<usize>> {
    match plan {
        LogicalPlan::Scan { table, filters, .. } if filters.is_empty() => Some(table.batch_rows()),
        LogicalPlan::Memory { batches, .. } => {
            Some(batches.iter().map(|batch| batch.num_rows()).collect())
        }
        LogicalPlan::Slice {
            input,
            offset,
            length,
        } => Some(slice_rows(
            chunk_rows(input)?,
            *offset,
            *length,
            |&rows| rows,
            |_, _, rows| rows,
        )),
        LogicalPlan::Project { input, .. }
        | LogicalPlan::Reinterpret { input, .. }
        | LogicalPlan::AttachColumns { input, .. } => chunk_rows(input),
        _ => None,
    }
}

/// The addresses of an array's values (for a fixed-size list, of its items).
fn values_range(array: &ArrayRef) -> Option<Range<usize>> {
    let data = array.to_data();
    let data = match data.data_type() {
        DataType::FixedSizeList(..) => data.child_data().first()?.clone(),
        _ => data,
    };
    let buffer = data.buffers().first()?;
    let start = buffer.as_ptr() as usize;
    Some(start..start + buffer.len())
}

/// The verdict for existing arrays of type `data_type` that live in `home`.
fn arrays_verdict(
    mut chunks: Vec<DecodedColumn>,
    data_type: &DataType,
    home: Home,
    mapped: &Range<usize>,
) -> Verdict {
    if chunks.is_empty() {
        chunks.push(DecodedColumn {
            array: arrow::array::new_empty_array(data_type),
            copy_reason: None,
        });
    }
    let range = match &home {
        Home::Attached(values) => values.clone(),
        Home::Mapping | Home::Memory(_) => mapped.clone(),
    };
    let Some(reason) = blocker(&chunks, &range) else {
        return match home {
            Home::Attached(values) => Verdict::AttachedView { values },
            // Collected views of the file are still views of it.
            Home::Mapping | Home::Memory(_) => Verdict::MappedView,
        };
    };
    // Arrays in memory that have a view's layout: the only obstacle is where they live.
    if let Home::Memory(made_by) = home
        && chunks.len() == 1
        && zero_copy_blocker(&chunks, &ANYWHERE).is_none()
    {
        let how = match made_by {
            None => "the frame was collected into memory (collect())".to_owned(),
            Some(call) => format!("the frame was made in memory by {call}()"),
        };
        return Verdict::Copy(format!(
            "{how}: its arrays are not in the mapped file, and exports copy them"
        ));
    }
    Verdict::Copy(reason)
}

/// Why `chunks` cannot be exported as a view of `range`; a copy made while decoding them (a
/// compressed or misaligned record batch) is named even where another reason comes first
/// (several batches, a type without a NumPy form).
fn blocker(chunks: &[DecodedColumn], range: &Range<usize>) -> Option<String> {
    let reason = zero_copy_blocker(chunks, range)?;
    match chunks.iter().find_map(|chunk| chunk.copy_reason.as_deref()) {
        Some(decoded) if !reason.contains(decoded) => Some(format!("{reason}; {decoded}")),
        _ => Some(reason),
    }
}

/// Why column `name` of a read of decoded or several files is a copy: the formats it was
/// decoded from, or the folder names a partition column comes from; None when `plan` reads
/// no such files.
fn decoded_read(plan: &LogicalPlan, name: &str) -> Option<String> {
    if let LogicalPlan::Read { view, .. } = plan {
        let dataset = view.dataset();
        if let Ok(index) = dataset.schema().index_of(name)
            && index >= dataset.file_schema().fields().len()
        {
            return Some(
                "a partition column: its value comes from the folder names (key=value), \
                 repeated into memory"
                    .into(),
            );
        }
        let formats: Vec<&str> = dataset
            .formats()
            .iter()
            .filter(|format| format.is_decoded())
            .map(|format| format.title())
            .collect();
        if formats.is_empty() {
            return Some(
                "read from several Arrow IPC files: the column is not one mapped file, and \
                 exports copy it"
                    .into(),
            );
        }
        return Some(format!(
            "decoded from {} into memory (a copy of the file's data)",
            formats.join(" and ")
        ));
    }
    plan.inputs()
        .iter()
        .find_map(|input| decoded_read(input, name))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow::array::{Float64Array, Int32Array, Int64Array, RecordBatch};
    use arrow::datatypes::{Field, Schema, SchemaRef};
    use relay_plan::plan::AttachedColumn;
    use relay_plan::{AggExpr, AggFunc, BinaryOp, JoinType, Keep, SortKey};
    use relay_storage::{IpcFile, TableView, write_ipc_file};

    use super::*;
    use crate::execute::execute;
    use crate::profile::Profile;

    const ROWS: usize = 30;

    /// A file removed when dropped.
    struct TempFile(PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("x", DataType::Float64, false),
            Field::new("n", DataType::Int32, true),
        ]))
    }

    /// id = row, x = row / 2, n = row with every third row null: `ROWS` rows in record
    /// batches of `rows_per_batch` rows.
    fn file(rows_per_batch: usize) -> (TempFile, Arc<IpcFile>) {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "relay-provenance-{}-{}.arrow",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from_iter_values(0..ROWS as i64)),
                Arc::new(Float64Array::from_iter_values(
                    (0..ROWS).map(|i| i as f64 / 2.0),
                )),
                Arc::new(Int32Array::from_iter(
                    (0..ROWS as i32).map(|i| (i % 3 != 0).then_some(i)),
                )),
            ],
        )
        .unwrap();
        write_ipc_file(&path, &schema(), &[batch], Some(rows_per_batch)).unwrap();
        let file = IpcFile::open(&path).unwrap();
        (TempFile(path), file)
    }

    fn scan(file: &Arc<IpcFile>) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::scan(TableView::new(file.clone())))
    }

    fn verdict(plan: &LogicalPlan, name: &str, file: &Arc<IpcFile>) -> Verdict {
        column_verdict(plan, name, &file.mapped_range()).unwrap()
    }

    fn copy(reason: &str) -> Verdict {
        Verdict::Copy(reason.to_owned())
    }

    /// Whether the executed column `name` of `plan` is one chunk, without a selection, whose
    /// arrays have a view's layout inside `range`: what the verdict predicts without running.
    fn executes_as_view(plan: &LogicalPlan, name: &str, range: &Range<usize>) -> bool {
        let view = execute(plan, &Profile::default()).unwrap();
        let index = view.schema.index_of(name).unwrap();
        let selected = view.chunks.iter().any(|chunk| chunk.selection.is_some());
        let mut chunks: Vec<DecodedColumn> = view
            .column_arrays(index)
            .unwrap()
            .into_iter()
            .map(|array| DecodedColumn {
                array,
                copy_reason: None,
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(DecodedColumn {
                array: arrow::array::new_empty_array(view.schema.field(index).data_type()),
                copy_reason: None,
            });
        }
        !selected && zero_copy_blocker(&chunks, range).is_none()
    }

    /// The verdict of `name`, checked against what executing `plan` gives.
    fn checked(plan: &LogicalPlan, name: &str, file: &Arc<IpcFile>) -> Verdict {
        let verdict = verdict(plan, name, file);
        let range = export_range(plan, name, &file.mapped_range());
        if let Verdict::AttachedView { values } = &verdict {
            assert_eq!(values, &range);
        }
        assert_eq!(
            verdict.copy_reason().is_none(),
            executes_as_view(plan, name, &range),
            "{verdict} for {name} of {plan}"
        );
        verdict
    }

    #[test]
    fn a_scan_of_one_record_batch_is_a_view_unless_the_layout_forbids_it() {
        let (_path, file) = file(ROWS);
        let plan = scan(&file);
        assert_eq!(checked(&plan, "x", &file), Verdict::MappedView);
        let nulls = checked(&plan, "n", &file);
        assert!(
            nulls
                .to_string()
                .starts_with("copy: the column has 10 null values")
        );
        assert_eq!(
            explain_column(&plan, "x", &file.mapped_range()),
            "view of the mapped file"
        );
        // A frame in memory has no mapping to be a view of.
        assert!(
            column_verdict(&plan, "x", &(0..0))
                .unwrap()
                .copy_reason()
                .is_some()
        );
    }

    #[test]
    fn a_scan_of_several_record_batches_is_a_view_only_within_one() {
        let (_path, file) = file(10);
        let plan = scan(&file);
        let whole = checked(&plan, "x", &file);
        assert!(
            whole
                .copy_reason()
                .unwrap()
                .contains("spans 3 record batches")
        );
        assert_eq!(checked(&plan.slice(12, 5), "x", &file), Verdict::MappedView);
        let across = checked(&plan.slice(5, 10), "x", &file);
        assert!(
            across
                .copy_reason()
                .unwrap()
                .contains("spans 2 record batches")
        );
        // Slices of slices apply innermost first.
        let twice = Arc::new(plan.slice(5, 20)).slice(6, 3);
        assert_eq!(checked(&twice, "x", &file), Verdict::MappedView);
        let empty = checked(&plan.slice(40, 5), "x", &file);
        assert_eq!(empty, Verdict::MappedView);
    }

    #[test]
    fn filters_and_takes_select_rows() {
        let (_path, file) = file(ROWS);
        let predicate =
            Expr::col("id").binary(BinaryOp::Gt, Expr::lit(Arc::new(Int64Array::from(vec![3]))));
        let filtered = Arc::new(scan(&file).filter(predicate.clone()).unwrap());
        assert_eq!(checked(&filtered, "x", &file), copy(FILTER));
        // Pushed into the scan by the optimizer: still the filter.
        let (optimized, _) = relay_plan::optimizer::Optimizer::default()
            .optimize(filtered.clone())
            .unwrap();
        assert!(
            matches!(optimized.as_ref(), LogicalPlan::Scan { filters, .. } if !filters.is_empty())
        );
        assert_eq!(checked(&optimized, "x", &file), copy(FILTER));
        let taken = Arc::new(scan(&file).take(&[3, 1, 2], ROWS as u64).unwrap());
        assert_eq!(checked(&taken, "x", &file), copy(TAKE));
        // The operation nearest the output names the copy.
        let taken_after_filter = filtered.take(&[0, 1], 26).unwrap();
        assert_eq!(verdict(&taken_after_filter, "x", &file), copy(TAKE));
    }

    #[test]
    fn projections_follow_the_column_and_expressions_compute() {
        let (_path, file) = file(ROWS);
        let plan = scan(&file);
        let renamed = plan
            .project(vec![Expr::col("x").alias("a").alias("b"), Expr::col("id")])
            .unwrap();
        assert_eq!(checked(&renamed, "b", &file), Verdict::MappedView);
        let two = Expr::lit(Arc::new(Float64Array::from(vec![2.0])));
        let computed = plan
            .with_columns(vec![(
                "y".into(),
                Expr::col("x").binary(BinaryOp::Mul, two),
            )])
            .unwrap();
        assert_eq!(checked(&computed, "y", &file), copy(COMPUTED));
        assert_eq!(checked(&computed, "x", &file), Verdict::MappedView);
        assert!(column_verdict(&computed, "nope", &file.mapped_range()).is_err());
        assert!(
            explain_column(&computed, "nope", &file.mapped_range())
                .starts_with("copy: the column cannot be read as it is")
        );
    }

    #[test]
    fn relational_operators_name_themselves() {
        let (_path, file) = file(ROWS);
        let plan = scan(&file);
        let key = SortKey {
            expr: Expr::col("x"),
            descending: true,
            nulls_last: true,
        };
        assert_eq!(
            verdict(&plan.sort(vec![key]).unwrap(), "id", &file),
            copy(SORT)
        );
        let unique = plan.distinct(Some(vec!["n".into()]), Keep::First).unwrap();
        assert_eq!(verdict(&unique, "id", &file), copy(UNIQUE));
        let grouped = plan
            .aggregate(
                vec![Expr::col("n")],
                vec![AggExpr::new(AggFunc::parse("sum").unwrap(), Expr::col("x")).alias("total")],
            )
            .unwrap();
        assert_eq!(verdict(&grouped, "total", &file), copy(AGGREGATE));
        let join = |how| {
            plan.join(
                &plan,
                vec![Expr::col("id")],
                vec![Expr::col("id")],
                how,
                "_right",
            )
            .unwrap()
        };
        assert_eq!(verdict(&join(JoinType::Inner), "x", &file), copy(JOIN));
        assert_eq!(verdict(&join(JoinType::Semi), "x", &file), copy(SEMI_JOIN));
        // A slice of them is still them; a column selected from them too.
        let sliced = Arc::new(join(JoinType::Left)).slice(0, 1);
        assert_eq!(verdict(&sliced, "x", &file), copy(JOIN));
    }

    fn attached(name: &str, array: ArrayRef, copied: Option<&str>) -> AttachedColumn {
        AttachedColumn {
            name: name.into(),
            array,
            copied: copied.map(str::to_owned),
        }
    }

    #[test]
    fn attached_arrays_are_views_of_themselves_along_the_rows_they_join() {
        let (_one, single) = file(ROWS);
        let values: ArrayRef =
            Arc::new(Float64Array::from_iter_values((0..ROWS).map(|i| i as f64)));
        let home = values_range(&values).unwrap();
        let plan = Arc::new(
            scan(&single)
                .attach_columns(vec![attached("w", values.clone(), None)])
                .unwrap(),
        );
        let view = checked(&plan, "w", &single);
        assert_eq!(
            view,
            Verdict::AttachedView {
                values: home.clone()
            }
        );
        assert_eq!(
            view.to_string(),
            "view of the array attached (referenced, not copied)"
        );
        assert_eq!(export_range(&plan, "w", &single.mapped_range()), home);
        assert_eq!(
            export_range(&plan, "x", &single.mapped_range()),
            single.mapped_range()
        );
        // The slice moves below the attachment, which then holds a slice of the array.
        let sliced = checked(&plan.slice(3, 4), "w", &single);
        assert!(
            matches!(&sliced, Verdict::AttachedView { values } if values.start == home.start + 3 * 8 && values.len() == 4 * 8),
            "{sliced:?}"
        );
        // The file's own columns are still views of it.
        assert_eq!(checked(&plan, "x", &single), Verdict::MappedView);
        // Over several record batches the executor cuts the array along them.
        let (_three, batched) = file(10);
        let over_batches = scan(&batched)
            .attach_columns(vec![attached("w", values.clone(), None)])
            .unwrap();
        let cut = checked(&over_batches, "w", &batched);
        assert!(
            cut.copy_reason()
                .unwrap()
                .contains("spans 3 record batches")
        );
        // An array copied when attached says why.
        let copied = scan(&single)
            .attach_columns(vec![attached("w", values, Some("not C-contiguous"))])
            .unwrap();
        assert_eq!(
            verdict(&copied, "w", &single),
            copy("the array was copied when attached (not C-contiguous)")
        );
    }

    #[test]
    fn reinterpreted_columns_keep_their_buffers() {
        let (_path, file) = file(ROWS);
        let plan = scan(&file);
        let as_float = plan
            .reinterpret(vec![("id".into(), DataType::Float64)])
            .unwrap();
        assert_eq!(checked(&as_float, "id", &file), Verdict::MappedView);
        // The new type decides the layout: date32 has no NumPy form of the same width.
        let as_date = scan(&file).project(vec![Expr::col("n")]).unwrap();
        let as_date = Arc::new(as_date)
            .reinterpret(vec![("n".into(), DataType::Date32)])
            .unwrap();
        assert!(
            verdict(&as_date, "n", &file)
                .copy_reason()
                .unwrap()
                .contains("null")
        );
        let whole = Arc::new(scan(&file).slice(1, 2))
            .reinterpret(vec![("n".into(), DataType::Date32)])
            .unwrap();
        assert!(
            checked(&whole, "n", &file)
                .copy_reason()
                .unwrap()
                .contains("date32")
        );
    }

    #[test]
    fn memory_is_a_view_where_it_holds_the_files_arrays() {
        let (_path, file) = file(ROWS);
        let table = TableView::new(file.clone());
        // Collected views of the file are still views of it.
        let collected = LogicalPlan::memory(table.schema(), table.record_batches().unwrap());
        assert_eq!(checked(&collected, "x", &file), Verdict::MappedView);
        // Arrays made in memory are copies because of where they live.
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("z", DataType::Float64, false)])),
            vec![Arc::new(Float64Array::from(vec![1.0, 2.0]))],
        )
        .unwrap();
        let in_memory = LogicalPlan::memory(batch.schema(), vec![batch.clone()]);
        assert_eq!(
            checked(&in_memory, "z", &file),
            copy(
                "the frame was collected into memory (collect()): its arrays are not in the mapped file, and exports copy them"
            )
        );
        let concatenated = LogicalPlan::Memory {
            schema: batch.schema(),
            batches: Arc::new(vec![batch.clone(), batch]),
            origin: Some("concat".into()),
        };
        let two = verdict(&concatenated, "z", &file);
        assert!(two.copy_reason().unwrap().contains("2 record batches"));
        let one = Arc::new(concatenated).slice(0, 2);
        assert!(
            verdict(&one, "z", &file)
                .copy_reason()
                .unwrap()
                .starts_with("the frame was made in memory by concat()")
        );
        // Arrays attached to rows in memory are cut along its batches.
        let rows = Arc::new(LogicalPlan::memory_rows(ROWS, "from_numpy").unwrap());
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..ROWS as i64));
        let from_numpy = rows
            .attach_columns(vec![attached("v", values.clone(), None)])
            .unwrap();
        assert_eq!(
            checked(&from_numpy, "v", &file),
            Verdict::AttachedView {
                values: values_range(&values).unwrap()
            }
        );
    }

    #[test]
    fn decoded_files_are_copies_whatever_selects_their_rows() {
        let view = relay_storage::DatasetView::new(crate::test_support::dataset(true));
        let read = Arc::new(LogicalPlan::read(view));
        let decoded = column_verdict(&read, "x", &(0..0)).unwrap();
        assert_eq!(
            decoded,
            copy("decoded from Parquet into memory (a copy of the file's data)")
        );
        let predicate =
            Expr::col("x").binary(BinaryOp::Gt, Expr::lit(Arc::new(Int64Array::from(vec![3]))));
        let filtered = read.filter(predicate).unwrap();
        assert_eq!(column_verdict(&filtered, "x", &(0..0)).unwrap(), decoded);
        let partition = column_verdict(&read, "part", &(0..0)).unwrap();
        assert!(
            partition
                .copy_reason()
                .unwrap()
                .starts_with("a partition column")
        );
        // An array attached to rows decoded piece by piece is cut along the pieces.
        let values: ArrayRef = Arc::new(Int64Array::from_iter_values(0..60));
        let attached = read
            .attach_columns(vec![attached("v", values, None)])
            .unwrap();
        assert_eq!(
            column_verdict(&attached, "v", &(0..0)).unwrap(),
            copy(PIECES)
        );
    }
}
