//! Untrusted bytes read as ipc (see `relay_storage::fuzzing`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    relay_storage::fuzzing::silence_caught_panics();
    relay_storage::fuzzing::Target::Ipc.run(data);
});
