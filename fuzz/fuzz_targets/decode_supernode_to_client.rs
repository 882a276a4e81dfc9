#![no_main]
//! `SupernodeToClient::decode` on arbitrary bytes.

use libfuzzer_sys::fuzz_target;
use parley_proto::messages::SupernodeToClient;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::wire_message::<SupernodeToClient>(data);
});
