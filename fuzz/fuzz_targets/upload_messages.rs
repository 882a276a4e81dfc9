#![no_main]
//! The upload probe messages (issue 10, kinds 0x35-0x36).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::upload_messages(data);
});
