#![no_main]
//! A bare postcard `SignedPresence` on arbitrary bytes, verified at a fixed time.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::presence(data);
});
