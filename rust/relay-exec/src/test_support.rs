//! Test helpers shared by the operators' unit tests: a dataset of decoded files held in memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use relay_storage::{ColumnStats, Dataset, DecodedFile, DecodedOpener, FileFormat, FragmentSpec};

use crate::view::ViewSet;

/// A decoded file in memory: pieces of `rows` rows each, x = row number, with min/max
/// statistics; row counts known only when `rows_known`.
#[derive(Debug)]
pub(crate) struct TestDecoded {
    path: PathBuf,
    pieces: Vec<Vec<i64>>,
    rows_known: bool,
    /// Pieces decoded by `read_piece`, counted across the dataset's files.
    decodes: Arc<AtomicUsize>,
}

impl DecodedFile for TestDecoded {
    fn path(&self) -> &Path {
        &self.path
    }
    fn format(&self) -> &'static str {
        "parquet"
    }
    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]))
    }
    fn num_pieces(&self) -> usize {
        self.pieces.len()
    }
    fn piece_rows(&self, piece: usize) -> Option<u64> {
        self.rows_known.then(|| self.pieces[piece].len() as u64)
    }
    fn piece_stats(&self, piece: usize, column: usize) -> Option<ColumnStats> {
        (column == 0).then(|| ColumnStats::of_array(&Int64Array::from(self.pieces[piece].clone())))
    }
    fn read_piece(
        &self,
        piece: usize,
        columns: &[usize],
        _batch_size: usize,
    ) -> relay_storage::Result<Vec<RecordBatch>> {
        self.decodes.fetch_add(1, Ordering::Relaxed);
        let values = &self.pieces[piece];
        let all: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(values.clone())),
            Arc::new(StringArray::from_iter_values(
                values.iter().map(|v| format!("s{v}")),
            )),
        ];
        let schema = self.schema().project(columns).unwrap();
        Ok(vec![
            RecordBatch::try_new(
                Arc::new(schema),
                columns.iter().map(|&c| all[c].clone()).collect(),
            )
            .unwrap(),
        ])
    }
}

pub(crate) fn dataset(rows_known: bool) -> Arc<Dataset> {
    counting_dataset(rows_known, Arc::default())
}

pub(crate) fn counting_dataset(rows_known: bool, decodes: Arc<AtomicUsize>) -> Arc<Dataset> {
    let opener: DecodedOpener = Arc::new(
        move |path: &Path, _format: FileFormat, _schema: Option<arrow::datatypes::SchemaRef>| {
            let first: i64 = path
                .to_string_lossy()
                .trim_start_matches("file")
                .parse()
                .unwrap();
            let pieces = (0..3)
                .map(|p| (first + p * 10..first + p * 10 + 10).collect())
                .collect();
            Ok(Arc::new(TestDecoded {
                path: path.to_owned(),
                pieces,
                rows_known,
                decodes: decodes.clone(),
            }) as Arc<dyn DecodedFile>)
        },
    );
    let specs = [0i64, 100]
        .iter()
        .map(|&first| FragmentSpec {
            path: PathBuf::from(format!("file{first}")),
            format: FileFormat::Parquet,
            partition_values: vec![Arc::new(Int64Array::from(vec![first / 100]))],
        })
        .collect();
    Dataset::new(
        "test",
        specs,
        vec![Field::new("part", DataType::Int64, true)],
        opener,
    )
    .unwrap()
}

pub(crate) fn xs(view: &ViewSet) -> Vec<i64> {
    let index = view.schema.index_of("x").unwrap();
    view.column_arrays(index)
        .unwrap()
        .iter()
        .flat_map(|a| {
            a.as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}
