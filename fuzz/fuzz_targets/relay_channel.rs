#![no_main]
//! The relay's media channel: both decoders, and the relay's channel table deciding on
//! arbitrary datagrams (never panics, answers never larger than what caused them,
//! nothing forwarded without a valid tag).

use libfuzzer_sys::fuzz_target;
use parley_proto::relay::channel::{decode_client, decode_relay, ChannelKey, KEY_LEN};
use parley_proto::relay::{ChannelTable, ChannelVerdict, LegId, RateLimit, RelayStats};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn table() -> &'static ChannelTable {
    static T: OnceLock<ChannelTable> = OnceLock::new();
    T.get_or_init(|| {
        let now = Instant::now();
        let t = ChannelTable::new(4, RateLimit::default(), now);
        let end = now + Duration::from_secs(3600);
        let a = t.open(now, LegId(1), ChannelKey([1; KEY_LEN]), end).expect("room");
        let b = t.open(now, LegId(2), ChannelKey([2; KEY_LEN]), end).expect("room");
        t.set_partner(a, Some((b, LegId(2))));
        t.set_partner(b, Some((a, LegId(1))));
        t
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_relay(data);
    let parsed = decode_client(data).is_ok();
    let mut packet = data.to_vec();
    let mut stats = RelayStats::default();
    let from = "198.51.100.1:4000".parse().expect("addr");
    match table().handle_datagram(Instant::now(), from, &mut packet, &mut stats) {
        ChannelVerdict::Send { .. } | ChannelVerdict::ToLeg { .. } => {
            panic!("forwarded without a valid tag from a proven address")
        }
        ChannelVerdict::Answer { len, .. } => assert!(parsed && len <= data.len()),
        ChannelVerdict::Drop(_) => {}
    }
});
