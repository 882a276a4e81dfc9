//! Upload probes against a live supernode on loopback: counted and reported, refused
//! when too large, and limited per key.

use crate::relays::RelayDirectory;
use crate::server::{start_with, ServerParams};
use parley_net::upload::measure_upload;
use parley_net::{dial, make_endpoint};
use parley_proto::messages::{RefusalCode, ALPN_CLIENT};
use parley_proto::upload::{UploadReply, MAX_PROBE_BYTES};
use parley_proto::Identity;
use std::time::Duration;
use tokio::sync::watch;

const T: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_probe_is_counted_refused_when_too_large_and_limited_per_key() {
    let (_stop, stop_rx) = watch::channel(false);
    let any = "127.0.0.1:0".parse().unwrap();
    let params = ServerParams::new(Identity::generate(), any, any);
    let (sn, serve) = start_with(params, RelayDirectory::new([]), stop_rx)
        .await
        .unwrap();
    tokio::spawn(serve);
    let id = Identity::generate();
    let ep = make_endpoint("127.0.0.1:0".parse().unwrap(), &id, &[]).unwrap();
    let (conn, _) = dial(&ep, &id, sn.quic, ALPN_CLIENT, Some(sn.id), T)
        .await
        .unwrap();

    let refused = |r: UploadReply| match r {
        UploadReply::Refused(r) => Some(r.code),
        UploadReply::Measured(_) => None,
    };
    // Too large: refused before anything is counted (and takes no quota).
    let big = measure_upload(&conn, MAX_PROBE_BYTES + 1, T).await.unwrap();
    assert_eq!(refused(big), Some(RefusalCode::Malformed));
    // Two probes of 1 MiB: every byte counted (loopback is fast: the byte limit ends it).
    for _ in 0..2 {
        let UploadReply::Measured(report) = measure_upload(&conn, 1 << 20, T).await.unwrap() else {
            panic!("refused")
        };
        assert_eq!(report.bytes(), 1 << 20);
        assert!(report.kbps().is_some_and(|k| k > 10_000), "{report:?}");
    }
    // The third from the same key within the hour is refused.
    let third = measure_upload(&conn, 1 << 20, T).await.unwrap();
    assert_eq!(refused(third), Some(RefusalCode::Overloaded));
    // The attachment still works.
    let again = measure_upload(&conn, 1, T).await.unwrap();
    assert_eq!(refused(again), Some(RefusalCode::Overloaded));
}
