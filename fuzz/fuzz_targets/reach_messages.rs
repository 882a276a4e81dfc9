#![no_main]
//! The reachability dial-back messages (issue 10, kinds 0x30-0x34).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::reach_messages(data);
});
