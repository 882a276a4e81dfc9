#![no_main]
//! `ClientToSupernode::decode` on arbitrary bytes.

use libfuzzer_sys::fuzz_target;
use parley_proto::messages::ClientToSupernode;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::wire_message::<ClientToSupernode>(data);
});
