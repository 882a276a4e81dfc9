#![no_main]
//! Relay control messages (all four kinds).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::relay_messages(data);
});
