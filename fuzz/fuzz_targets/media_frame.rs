#![no_main]
//! Media datagrams: plaintext parse with a seal/open round trip, and `open`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::media_frame(data);
});
