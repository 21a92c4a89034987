//! Fuzz target: `sluice::fuzzing::sasl_messages` (what it drives and asserts is documented there).
#![no_main]

#[global_allocator]
static ALLOCATOR: sluice::fuzzing::CountingAllocator = sluice::fuzzing::CountingAllocator;

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice::fuzzing::sasl_messages(data));
