//! Untrusted bytes read as parquet (see `relay_storage::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    relay_storage::fuzzing::silence_caught_panics();
    relay_storage::fuzzing::Target::Parquet.run(data);
});
