#![no_main]
//! A bare postcard `SignedRelayToken`, verified as a relay would.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::relay_token(data);
});
