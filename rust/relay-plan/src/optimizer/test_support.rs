//! Arrow IPC files written by arrow-rs's `FileWriter` for the optimizer tests, and small
//! builders for the expressions the tests use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::ipc::writer::FileWriter;
use relay_storage::{IpcFile, TableView};

use crate::expr::Expr;
use crate::optimizer::{OptimizerRule, same_schema};
use crate::plan::LogicalPlan;

/// An Arrow IPC file under the system temp dir, opened; removed on drop.
pub struct TestFile {
    path: PathBuf,
    pub file: Arc<IpcFile>,
}

impl TestFile {
    /// Writes `batches` (all of one schema) to a fresh file and opens it.
    pub fn write(name: &str, schema: SchemaRef, batches: &[RecordBatch]) -> TestFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "relay-plan-{}-{name}-{unique}.arrow",
            std::process::id()
        ));
        let mut writer =
            FileWriter::try_new(std::fs::File::create(&path).expect("create"), &schema)
                .expect("writer");
        for batch in batches {
            writer.write(batch).expect("write batch");
        }
        writer.finish().expect("finish");
        let file = IpcFile::open(&path).expect("open");
        TestFile { path, file }
    }

    /// Three record batches of ten rows:
    /// id int64 0..29; age int32 = id (batch 1 has nulls at ages 12 and 15); score float64 =
    /// id / 2; name utf8 "p<id>"; city dictionary<int32, utf8> "bergen" (batch 0), "oslo" (batch 1),
    /// "tromso" (batch 2), one dictionary of the three for all batches; flag boolean, true only in batch 2.
    pub fn people() -> TestFile {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("age", DataType::Int32, true),
            Field::new("score", DataType::Float64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "city",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("flag", DataType::Boolean, true),
        ]));
        let batches: Vec<RecordBatch> = (0..3i64)
            .map(|batch| {
                let ids: Vec<i64> = (batch * 10..batch * 10 + 10).collect();
                let ages: Int32Array = ids
                    .iter()
                    .map(|&id| (id != 12 && id != 15).then_some(id as i32))
                    .collect();
                // An IPC file holds one dictionary per column: every batch shares it.
                let cities = DictionaryArray::<Int32Type>::try_new(
                    Int32Array::from(vec![batch as i32; 10]),
                    Arc::new(StringArray::from(vec!["bergen", "oslo", "tromso"])),
                )
                .expect("dictionary");
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(ages),
                    Arc::new(Float64Array::from_iter_values(
                        ids.iter().map(|&id| id as f64 / 2.0),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter().map(|id| format!("p{id}")),
                    )),
                    Arc::new(cities),
                    Arc::new(BooleanArray::from(vec![batch == 2; 10])),
                ];
                RecordBatch::try_new(schema.clone(), columns).expect("batch")
            })
            .collect();
        TestFile::write("people", schema, &batches)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn table(&self) -> TableView {
        TableView::new(self.file.clone())
    }

    pub fn scan(&self) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::scan(self.table()))
    }
}

impl Drop for TestFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn int(value: i64) -> Expr {
    Expr::lit(Arc::new(Int64Array::from(vec![value])))
}

pub fn float(value: f64) -> Expr {
    Expr::lit(Arc::new(Float64Array::from(vec![value])))
}

pub fn string(value: &str) -> Expr {
    Expr::lit(Arc::new(StringArray::from(vec![value])))
}

/// Runs `rule` and checks what every rule must keep: the output schema. Returns the plan
/// before and after as `display_indent` text, and the rewritten plan.
pub fn run_rule(
    rule: &dyn OptimizerRule,
    plan: &Arc<LogicalPlan>,
) -> (String, String, Arc<LogicalPlan>) {
    let rewritten = rule.rewrite(plan.clone()).expect("rule");
    assert!(
        same_schema(plan, &rewritten),
        "{} changed the schema from {:?} to {:?}",
        rule.name(),
        plan.schema().map(|s| s.to_string()),
        rewritten.schema().map(|s| s.to_string())
    );
    (plan.display_indent(), rewritten.display_indent(), rewritten)
}

/// `display_indent` with the test file's path replaced by `FILE`, for readable expectations.
pub fn shown(plan: &LogicalPlan, file: &TestFile) -> String {
    plan.display_indent()
        .replace(&file.path().display().to_string(), "FILE")
}

// -- a reference executor for the tests ---------------------------------------------------------

/// Runs `plan` naively (whole columns, arrow-rs kernels) into one record batch, for checking
/// that an optimized plan returns what the original does. Covers the expressions the tests use.
pub fn execute(plan: &LogicalPlan) -> RecordBatch {
    use arrow::compute::{concat_batches, filter_record_batch};
    match plan {
        LogicalPlan::Scan { table, filters, .. } => {
            let batches = table.record_batches().expect("decode");
            let mut batch = concat_batches(&table.schema(), &batches).expect("concat");
            for predicate in filters {
                let mask = evaluate(predicate, &batch);
                batch = filter_record_batch(&batch, mask.as_boolean()).expect("filter");
            }
            batch
        }
        LogicalPlan::Filter { input, predicate } => {
            let batch = execute(input);
            let mask = evaluate(predicate, &batch);
            filter_record_batch(&batch, mask.as_boolean()).expect("filter")
        }
        LogicalPlan::Project { input, exprs } => {
            let batch = execute(input);
            let columns: Vec<ArrayRef> = exprs.iter().map(|expr| evaluate(expr, &batch)).collect();
            let options =
                arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            RecordBatch::try_new_with_options(plan.schema().expect("schema"), columns, &options)
                .expect("project")
        }
        LogicalPlan::Slice {
            input,
            offset,
            length,
        } => {
            let batch = execute(input);
            let rows = batch.num_rows();
            let offset = (*offset as usize).min(rows);
            batch.slice(offset, (*length as usize).min(rows - offset))
        }
        LogicalPlan::Take { input, indices, .. } => {
            let batch = execute(input);
            let indices = arrow::array::UInt64Array::from(indices.as_ref().clone());
            arrow::compute::take_record_batch(&batch, &indices).expect("take")
        }
        other => panic!("the test executor has no {other}"),
    }
}

fn evaluate(expr: &Expr, batch: &RecordBatch) -> ArrayRef {
    use crate::expr::{BinaryOp, UnaryOp};
    use arrow::compute::kernels::{boolean, cmp, numeric};
    let rows = batch.num_rows();
    match expr {
        Expr::Column(name) => batch.column_by_name(name).expect("column").clone(),
        Expr::Literal(literal) => arrow::compute::take(
            &literal.0,
            &arrow::array::UInt32Array::from(vec![0; rows]),
            None,
        )
        .expect("take"),
        Expr::Alias { input, .. } => evaluate(input, batch),
        Expr::Cast { input, to } => {
            arrow::compute::cast(&evaluate(input, batch), to).expect("cast")
        }
        Expr::Unary { op, input } => {
            let input = evaluate(input, batch);
            match op {
                UnaryOp::Not => Arc::new(boolean::not(input.as_boolean()).expect("not")),
                UnaryOp::IsNull => Arc::new(arrow::compute::is_null(&input).expect("is_null")),
                UnaryOp::IsNotNull => {
                    Arc::new(arrow::compute::is_not_null(&input).expect("is_not_null"))
                }
                UnaryOp::Negate => numeric::neg(&input).expect("neg"),
                other => panic!("the test executor has no {other:?}"),
            }
        }
        Expr::Binary { op, left, right } => {
            let (l, r) = (evaluate(left, batch), evaluate(right, batch));
            let compared = |result: Result<BooleanArray, arrow::error::ArrowError>| -> ArrayRef {
                Arc::new(result.expect("compare"))
            };
            match op {
                BinaryOp::Eq => compared(cmp::eq(&l, &r)),
                BinaryOp::NotEq => compared(cmp::neq(&l, &r)),
                BinaryOp::Lt => compared(cmp::lt(&l, &r)),
                BinaryOp::LtEq => compared(cmp::lt_eq(&l, &r)),
                BinaryOp::Gt => compared(cmp::gt(&l, &r)),
                BinaryOp::GtEq => compared(cmp::gt_eq(&l, &r)),
                BinaryOp::And => compared(boolean::and_kleene(l.as_boolean(), r.as_boolean())),
                BinaryOp::Or => compared(boolean::or_kleene(l.as_boolean(), r.as_boolean())),
                BinaryOp::Add => numeric::add(&l, &r).expect("add"),
                BinaryOp::Sub => numeric::sub(&l, &r).expect("sub"),
                BinaryOp::Mul => numeric::mul(&l, &r).expect("mul"),
                BinaryOp::Div => numeric::div(&l, &r).expect("div"),
                other => panic!("the test executor has no {other:?}"),
            }
        }
        Expr::IsIn { input, values } => {
            let input = evaluate(input, batch);
            let mut result = BooleanArray::from(vec![false; rows]);
            for index in 0..values.0.len() {
                let value = arrow::array::Scalar::new(values.0.slice(index, 1));
                result =
                    boolean::or_kleene(&result, &cmp::eq(&input, &value).expect("eq")).expect("or");
            }
            Arc::new(result)
        }
        other => panic!("the test executor has no {other}"),
    }
}

use arrow::array::AsArray;

/// Three Arrow IPC files under one folder, read as a dataset partitioned by `part` (int64,
/// the file's number): file `k` holds two record batches of five rows, id int64 `10k ..
/// 10k + 10` and age int32 = id. Removed on drop.
pub struct TestDataset {
    dir: PathBuf,
    pub dataset: Arc<relay_storage::Dataset>,
}

impl TestDataset {
    pub fn parts() -> TestDataset {
        use relay_storage::{Dataset, FileFormat, FragmentSpec, StorageError};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("relay-plan-{}-parts-{unique}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("age", DataType::Int32, true),
        ]));
        let mut specs = Vec::new();
        for part in 0..3i64 {
            let path = dir.join(format!("part-{part}.arrow"));
            let mut writer =
                FileWriter::try_new(std::fs::File::create(&path).expect("create"), &schema)
                    .expect("writer");
            for half in 0..2 {
                let ids: Vec<i64> = (part * 10 + half * 5..part * 10 + half * 5 + 5).collect();
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(Int32Array::from_iter_values(
                        ids.iter().map(|&id| id as i32),
                    )),
                ];
                writer
                    .write(&RecordBatch::try_new(schema.clone(), columns).expect("batch"))
                    .expect("write");
            }
            writer.finish().expect("finish");
            specs.push(FragmentSpec {
                path,
                format: FileFormat::Ipc,
                partition_values: vec![Arc::new(Int64Array::from(vec![part]))],
            });
        }
        let opener: relay_storage::DecodedOpener = Arc::new(|path: &Path, _, _| {
            Err(StorageError::Unsupported {
                path: path.to_owned(),
                reason: "only Arrow IPC files in these tests".into(),
            })
        });
        let dataset = Dataset::new(
            "DIR",
            specs,
            vec![Field::new("part", DataType::Int64, true)],
            opener,
        )
        .expect("dataset");
        TestDataset { dir, dataset }
    }

    pub fn read(&self) -> Arc<LogicalPlan> {
        Arc::new(LogicalPlan::read(relay_storage::DatasetView::new(
            self.dataset.clone(),
        )))
    }
}

impl Drop for TestDataset {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
