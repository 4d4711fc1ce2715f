//! What the expression fuzz target runs: bytes read as a program that builds an expression
//! (columns, literals of several types, every operator, casts, `when`, `is_in`, shared
//! subtrees), which is then type-checked, optimized and evaluated as a projection and as a
//! filter over a small batch with nulls, NaN and extreme values. Errors are the expected
//! outcome of most programs; a panic, a crash or a hang is a bug. Shared by the libFuzzer
//! target under `rust/fuzz` and the bounded run in `tests/fuzz_expressions.rs`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int8Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::DataType;
use relay_plan::optimizer::Optimizer;
use relay_plan::{BinaryOp, Expr, Literal, LogicalPlan, StringMatch, UnaryOp};

use crate::execute::execute;
use crate::profile::Profile;

/// Operations a program may run; past it the program stops (its depth stays within what the
/// engine accepts or is refused with an error).
const MAX_OPERATIONS: usize = 20_000;

/// Nodes of an expression counted as a tree (a shared subtree once per use). Passes walk
/// expressions as trees, so `e + e` nested n times costs 2^n: a program that would build more
/// pushes a column instead, to keep each run short.
const MAX_TREE_NODES: u64 = 100_000;

const COLUMNS: [&str; 6] = ["i", "f", "s", "b", "d", "small"];

const CASTS: [DataType; 9] = [
    DataType::Int8,
    DataType::Int32,
    DataType::Int64,
    DataType::UInt32,
    DataType::Float32,
    DataType::Float64,
    DataType::Utf8,
    DataType::Boolean,
    DataType::Date32,
];

/// The batch expressions run over: each column has a null and values at its type's edges.
fn sample_batch() -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "i",
            Arc::new(Int64Array::from(vec![
                Some(0),
                Some(-1),
                Some(i64::MAX),
                Some(i64::MIN),
                None,
                Some(7),
            ])),
        ),
        (
            "f",
            Arc::new(Float64Array::from(vec![
                Some(0.5),
                Some(f64::NAN),
                Some(f64::INFINITY),
                Some(-0.0),
                Some(1e308),
                None,
            ])),
        ),
        (
            "s",
            Arc::new(StringArray::from(vec![
                Some("oslo"),
                Some(""),
                None,
                Some("røme"),
                Some("12"),
                Some("2024-02-29"),
            ])),
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                None,
                Some(false),
                Some(true),
                Some(false),
                Some(true),
            ])),
        ),
        (
            "d",
            Arc::new(Date32Array::from(vec![
                Some(0),
                Some(-719_162),
                Some(2_932_896),
                None,
                Some(19_782),
                Some(i32::MAX),
            ])),
        ),
        (
            "small",
            Arc::new(Int8Array::from(vec![
                Some(i8::MIN),
                Some(i8::MAX),
                Some(0),
                Some(-1),
                None,
                Some(3),
            ])),
        ),
    ];
    RecordBatch::try_from_iter(columns).expect("the sample batch")
}

/// Reads bytes one at a time (zeros past the end).
struct Program<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Program<'_> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn byte(&mut self) -> u8 {
        let byte = self.bytes.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        byte
    }

    fn word(&mut self) -> u64 {
        (0..8).fold(0, |word, _| word << 8 | u64::from(self.byte()))
    }

    fn text(&mut self) -> String {
        let len = usize::from(self.byte() % 8);
        let bytes: Vec<u8> = (0..len).map(|_| self.byte()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn literal(&mut self) -> ArrayRef {
        match self.byte() % 5 {
            0 => Arc::new(Int64Array::from(vec![self.word() as i64])),
            1 => Arc::new(Float64Array::from(vec![f64::from_bits(self.word())])),
            2 => Arc::new(StringArray::from(vec![self.text()])),
            3 => Arc::new(BooleanArray::from(vec![self.byte().is_multiple_of(2)])),
            _ => Literal::null().0,
        }
    }
}

/// The expression `bytes` build: a stack machine, one operation per byte. The stack holds
/// each expression with its size counted as a tree.
fn build(bytes: &[u8]) -> Option<Expr> {
    let mut program = Program { bytes, at: 0 };
    let mut stack: Vec<(Expr, u64)> = Vec::new();
    let mut operations = 0;
    while !program.done() && operations < MAX_OPERATIONS {
        operations += 1;
        // Operands taken from the stack: their total tree size, and the expressions.
        let mut taken = 0u64;
        let mut pop = |stack: &mut Vec<(Expr, u64)>| {
            let (expr, size) = stack.pop().unwrap_or((Expr::col("i"), 1));
            taken = taken.saturating_add(size);
            expr
        };
        let op = program.byte();
        let expr = match op % 14 {
            0 | 1 => Expr::col(COLUMNS[usize::from(program.byte()) % COLUMNS.len()]),
            2 => Expr::lit(program.literal()),
            3 => {
                let right = pop(&mut stack);
                let left = pop(&mut stack);
                left.binary(
                    BinaryOp::ALL[usize::from(program.byte()) % BinaryOp::ALL.len()],
                    right,
                )
            }
            4 => pop(&mut stack)
                .unary(UnaryOp::ALL[usize::from(program.byte()) % UnaryOp::ALL.len()]),
            5 => Expr::StringMatch {
                kind: [
                    StringMatch::StartsWith,
                    StringMatch::EndsWith,
                    StringMatch::Contains,
                ][usize::from(program.byte()) % 3],
                input: Arc::new(pop(&mut stack)),
                pattern: program.text(),
            },
            6 => {
                let input = Arc::new(pop(&mut stack));
                let count = usize::from(program.byte() % 4);
                let values: ArrayRef = if program.byte().is_multiple_of(2) {
                    Arc::new(Int64Array::from(
                        (0..count)
                            .map(|_| program.word() as i64)
                            .collect::<Vec<_>>(),
                    ))
                } else {
                    Arc::new(StringArray::from(
                        (0..count).map(|_| program.text()).collect::<Vec<_>>(),
                    ))
                };
                Expr::IsIn {
                    input,
                    values: Literal(values),
                }
            }
            7 => {
                let value = Arc::new(pop(&mut stack));
                Expr::FillNull {
                    input: Arc::new(pop(&mut stack)),
                    value,
                }
            }
            8 => Expr::Cast {
                input: Arc::new(pop(&mut stack)),
                to: CASTS[usize::from(program.byte()) % CASTS.len()].clone(),
            },
            9 => {
                let otherwise = Arc::new(pop(&mut stack));
                let then = pop(&mut stack);
                let condition = pop(&mut stack);
                Expr::Case {
                    branches: vec![(condition, then)],
                    otherwise,
                }
            }
            10 => pop(&mut stack).alias(program.text()),
            // A shared subtree: trees of shared nodes grow deep for few bytes.
            11 => {
                let (top, size) = stack.last().cloned().unwrap_or((Expr::col("f"), 1));
                stack.push((top, size));
                continue;
            }
            12 => {
                let right = pop(&mut stack);
                pop(&mut stack).and(right)
            }
            _ => {
                let top = pop(&mut stack);
                taken = taken.saturating_mul(2);
                top.clone().binary(BinaryOp::Add, top)
            }
        };
        let size = taken.saturating_add(1);
        stack.push(if size > MAX_TREE_NODES {
            (Expr::col("i"), 1)
        } else {
            (expr, size)
        });
    }
    stack.pop().map(|(expr, _)| expr)
}

/// Builds the expression `bytes` describe and runs it as a projection and as a filter.
pub fn expression(bytes: &[u8]) {
    let Some(expr) = build(bytes) else {
        return;
    };
    let batch = sample_batch();
    let source = Arc::new(LogicalPlan::memory(batch.schema(), vec![batch]));
    let plans = [
        source.project(vec![expr.clone().alias("out")]),
        source.filter(expr),
    ];
    for plan in plans.into_iter().flatten() {
        let Ok((optimized, _)) = Optimizer::default().optimize(Arc::new(plan)) else {
            continue;
        };
        let _ = optimized.display_indent();
        if let Ok(result) = execute(&optimized, &Profile::default()) {
            let _ = result.record_batches();
        }
    }
}
