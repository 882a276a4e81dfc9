#![no_main]
//! `SupernodeReply::decode` on arbitrary bytes.

use libfuzzer_sys::fuzz_target;
use parley_proto::messages::SupernodeReply;

fuzz_target!(|data: &[u8]| {
    parley_fuzz::wire_message::<SupernodeReply>(data);
});
