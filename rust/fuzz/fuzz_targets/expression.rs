//! Bytes read as a program that builds an expression, then run (see `relay_exec::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    relay_storage::fuzzing::silence_caught_panics();
    relay_exec::fuzzing::expression(data);
});
