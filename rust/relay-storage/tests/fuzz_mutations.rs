//! The fuzz targets' bodies on mutated files, for a bounded time (`relay_storage::fuzzing`
//! says how, and how to replay a run): each format starts from small valid files relay and
//! arrow-rs write (many types, nulls, dictionaries, nesting, several batches or row groups).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, DictionaryArray, Float32Array, Int8Array, Int64Array, ListArray,
    RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, SchemaRef};
use relay_storage::fuzzing::{Target, mutation_run};
use relay_storage::{ParquetWriteOptions, write_ipc_file, write_parquet_file};

fn sample_batches(rows: usize) -> (SchemaRef, Vec<RecordBatch>) {
    let ids: Int64Array = (0..rows as i64)
        .map(|i| (i % 7 != 3).then_some(i))
        .collect();
    let floats: Float32Array = (0..rows).map(|i| Some(i as f32 / 3.0)).collect();
    let small: Int8Array = (0..rows).map(|i| Some((i % 100) as i8)).collect();
    let flags: BooleanArray = (0..rows)
        .map(|i| (i % 5 != 0).then_some(i % 2 == 0))
        .collect();
    let names: StringArray = (0..rows)
        .map(|i| (i % 11 != 0).then(|| format!("name-{}", i * 31 % 97)))
        .collect();
    let cities: DictionaryArray<Int32Type> =
        (0..rows).map(|i| ["oslo", "rome", "lima"][i % 3]).collect();
    let times: TimestampMicrosecondArray = (0..rows as i64)
        .map(|i| Some(1_700_000_000_000_000 + i * 1_000_003))
        .collect();
    let lists = ListArray::from_iter_primitive::<arrow::datatypes::Int64Type, _, _>(
        (0..rows)
            .map(|i| (i % 4 != 1).then(|| (0..i % 5).map(|j| Some(j as i64)).collect::<Vec<_>>())),
    );
    let point = StructArray::from(vec![
        (
            Arc::new(Field::new("x", DataType::Float32, true)),
            Arc::new(floats.clone()) as ArrayRef,
        ),
        (
            Arc::new(Field::new("n", DataType::Int8, true)),
            Arc::new(small.clone()) as ArrayRef,
        ),
    ]);
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(ids)),
        ("f", Arc::new(floats)),
        ("small", Arc::new(small)),
        ("flag", Arc::new(flags)),
        ("name", Arc::new(names)),
        ("city", Arc::new(cities)),
        ("at", Arc::new(times)),
        ("items", Arc::new(lists)),
        ("point", Arc::new(point)),
    ];
    let batch = RecordBatch::try_from_iter(columns).expect("a sample batch");
    let schema = batch.schema();
    let batches = (0..rows)
        .step_by(40)
        .map(|start| batch.slice(start, 40.min(rows - start)))
        .collect();
    (schema, batches)
}

/// Small valid inputs of `target`'s format.
fn seeds(target: Target, directory: &Path) -> Vec<Vec<u8>> {
    let (schema, batches) = sample_batches(120);
    match target {
        Target::Ipc => {
            let file = directory.join("seed.arrow");
            write_ipc_file(&file, &schema, &batches, None).expect("write a seed");
            let mut stream = Vec::new();
            let mut writer =
                arrow::ipc::writer::StreamWriter::try_new(&mut stream, &schema).expect("stream");
            for batch in &batches {
                writer.write(batch).expect("write a stream batch");
            }
            writer.finish().expect("finish a stream");
            drop(writer);
            vec![std::fs::read(&file).expect("read a seed"), stream]
        }
        Target::Parquet => {
            let file = directory.join("seed.parquet");
            let options = ParquetWriteOptions {
                row_group_rows: 50,
                ..ParquetWriteOptions::default()
            };
            write_parquet_file(&file, &schema, &batches, &options).expect("write a seed");
            vec![std::fs::read(&file).expect("read a seed")]
        }
        Target::Csv => vec![
            b"id,f,name,flag,at\n1,0.5,oslo,true,2024-01-02T03:04:05\n2,,\"ro,me\",false,\n\
              3,1e9,\"li\"\"ma\",,2024-02-30\n"
                .to_vec(),
        ],
        Target::Ndjson => vec![
            b"{\"id\": 1, \"f\": 0.5, \"name\": \"oslo\", \"items\": [1, 2], \"p\": {\"x\": 1}}\n\
              {\"id\": null, \"f\": 2, \"name\": \"r\\u00f6me\", \"items\": [], \"p\": null}\n\
              {\"id\": 3, \"extra\": true}\n"
                .to_vec(),
        ],
    }
}

fn fuzz(target: Target) {
    let directory = std::env::temp_dir().join(format!(
        "relay-fuzz-seeds-{}-{}",
        std::process::id(),
        target.name()
    ));
    std::fs::create_dir_all(&directory).expect("a scratch directory");
    let seeds = seeds(target, &directory);
    let _ = std::fs::remove_dir_all(&directory);
    mutation_run(target.name(), seeds, |bytes| target.run(bytes));
    let _ = std::fs::remove_file(target.scratch_path());
}

#[test]
fn fuzz_ipc() {
    fuzz(Target::Ipc);
}

#[test]
fn fuzz_parquet() {
    fuzz(Target::Parquet);
}

#[test]
fn fuzz_csv() {
    fuzz(Target::Csv);
}

#[test]
fn fuzz_ndjson() {
    fuzz(Target::Ndjson);
}
