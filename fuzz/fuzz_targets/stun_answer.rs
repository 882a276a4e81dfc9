#![no_main]
//! The supernode's STUN responder, `answer_binding`, on arbitrary datagrams.
//!
//! The supernode is a binary crate, so its `stun` module is compiled here in place.
//! That works as long as supernode/src/stun.rs only uses external crates (stun-rs,
//! tokio, tracing), not `crate::` items of the supernode.

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use stun_rs::attributes::stun::XorMappedAddress;
use stun_rs::{MessageClass, MessageDecoder};

#[allow(dead_code)]
#[path = "../../supernode/src/stun.rs"]
mod stun;

fuzz_target!(|data: &[u8]| {
    let sources: [SocketAddr; 2] = [
        SocketAddr::from(([203, 0, 113, 7], 40_000)),
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 9)),
    ];
    for from in sources {
        let Some(answer) = stun::answer_binding(data, from) else {
            continue;
        };
        // Only well-formed requests are answered.
        assert!(data.len() >= 20 && data.len() <= stun::MAX_REQUEST_LEN);
        let (msg, len) = MessageDecoder::default()
            .decode(&answer)
            .expect("an answer decodes");
        assert_eq!(len, answer.len());
        assert_eq!(msg.transaction_id().as_bytes()[..], data[8..20]);
        match msg.class() {
            MessageClass::SuccessResponse => {
                let mapped = msg
                    .get::<XorMappedAddress>()
                    .expect("a success carries XOR-MAPPED-ADDRESS")
                    .as_xor_mapped_address()
                    .expect("an XorMappedAddress");
                assert_eq!(*mapped.socket_address(), from);
            }
            MessageClass::ErrorResponse => {}
            class => panic!("answered with a {class:?}"),
        }
    }
});
