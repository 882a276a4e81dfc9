#![no_main]
//! A call signalling frame (`CallSignal`), with every signed part verified.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::call_signal(data);
});
