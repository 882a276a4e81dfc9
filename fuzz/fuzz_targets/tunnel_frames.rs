#![no_main]
//! A TCP tunnel byte stream, framed as `length:u16be datagram`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::tunnel_frames(data);
});
