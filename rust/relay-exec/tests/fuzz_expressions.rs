//! Expressions built from mutated programs (`relay_exec::fuzzing`), type-checked, optimized and
//! evaluated for a bounded time (see `relay_storage::fuzzing::mutation_run`).

/// Programs that build a little of everything: arithmetic on each column, comparisons joined
/// by `and`, casts, `when`, `is_in`, string matches, shared subtrees.
const SEEDS: [&[u8]; 4] = [
    // col(i) + lit(7) cast to float32, > col(f)
    &[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 7, 3, 6, 8, 4, 0, 1, 3, 4],
    // when(col(b)).then(col(s)).otherwise(lit("x")), starts_with, is_in
    &[
        0, 3, 0, 2, 2, 2, 1, b'x', 9, 5, 0, 2, b'o', b's', 6, 2, 1, 1, b'a',
    ],
    // dt.year(col(d)) fill_null(col(small)) // col(i), then e + e three times
    &[0, 4, 4, 6, 0, 5, 7, 0, 0, 3, 10, 13, 13, 13],
    // is_null(col(f)) and not(col(b)), aliased
    &[0, 1, 4, 3, 0, 3, 4, 0, 12, 10, 3, b'o', b'u', b't'],
];

#[test]
fn fuzz_expression() {
    relay_storage::fuzzing::mutation_run(
        "expression",
        SEEDS.iter().map(|seed| seed.to_vec()).collect(),
        relay_exec::fuzzing::expression,
    );
}
