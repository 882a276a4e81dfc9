#![no_main]
//! `PeerId::from_str` on arbitrary text.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::peer_id(data);
});
