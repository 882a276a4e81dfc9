#![no_main]
//! `SupernodeToSupernode::decode` on arbitrary bytes.

use libfuzzer_sys::fuzz_target;
use parley_proto::messages::SupernodeToSupernode;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::wire_message::<SupernodeToSupernode>(data);
});
