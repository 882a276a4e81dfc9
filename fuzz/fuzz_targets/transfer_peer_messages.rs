#![no_main]
//! See `parley_fuzz::transfer_peer_messages`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::transfer_peer_messages(data);
});
