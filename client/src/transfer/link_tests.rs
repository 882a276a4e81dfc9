use super::*;
use parley_proto::transfer::{Manifest, SwarmConfig};
use parley_proto::Identity;
use tokio::io::{DuplexStream, ReadHalf, WriteHalf};

type Streams = PeerStreams<ReadHalf<DuplexStream>, WriteHalf<DuplexStream>>;

type Outcome = tokio::task::JoinHandle<Result<(Swarm, Store), StorageError>>;

const RECEIVER: Role = Role::Receiver {
    idle: Duration::from_secs(60),
};

/// [`run`] with a fixed set of peers (the channel of new peers is closed at once).
async fn run_with<R, W>(
    swarm: Swarm,
    store: Store,
    peers: Vec<PeerStreams<R, W>>,
    role: Role,
) -> Result<(Swarm, Store), StorageError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(peers.len().max(1));
    for p in peers {
        let _ = tx.try_send(p);
    }
    drop(tx);
    let (reports, _) = mpsc::unbounded_channel();
    run(swarm, store, rx, reports, role).await
}

/// Every receiver completes and ends with `data` at `DIR/name`; then the sender
/// ends (its peers left), having uploaded at most 1.5 times the file.
async fn expect_delivered(
    sender: Outcome,
    receivers: Vec<Outcome>,
    data: &[u8],
    name: &str,
    dirs: &[&std::path::Path],
) {
    for (i, t) in receivers.into_iter().enumerate() {
        let (swarm, store) = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("in time")
            .expect("task")
            .expect("run");
        assert!(swarm.is_complete());
        // Renamed into place as soon as the last chunk verified, not at the end.
        let Store::Finished { path, .. } = store else {
            panic!("a receiver whose file is not in place")
        };
        assert_eq!(path, dirs[i].join(name));
        assert!(
            std::fs::read(&path).expect("read") == data,
            "recipient {i}: bytes differ"
        );
    }
    let (s_swarm, _) = tokio::time::timeout(Duration::from_secs(30), sender)
        .await
        .expect("the sender ends when its peers leave")
        .expect("task")
        .expect("run");
    let ratio = s_swarm.stats().uploaded as f64 / data.len() as f64;
    assert!(ratio <= 1.5, "sender uploaded {ratio:.2}x");
}

/// A 4 MiB file to two recipients over in-memory streams, through the storage
/// shell: both end with the sender's bytes under its name.
#[tokio::test]
async fn a_file_reaches_two_recipients_through_the_shell() {
    let src_dir = tempfile::tempdir().expect("tempdir");
    let data: Vec<u8> = (0..4 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let src = src_dir.path().join("photo.raw");
    std::fs::write(&src, &data).expect("write");
    let sender = Identity::from_seed(&[1; 32]);
    let manifest = Manifest::for_bytes(&sender, "photo.raw", &data).expect("manifest");
    let ids = [
        sender.peer_id(),
        Identity::from_seed(&[2; 32]).peer_id(),
        Identity::from_seed(&[3; 32]).peer_id(),
    ];
    let mut links: Vec<Vec<Streams>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for a in 0..3 {
        for b in a + 1..3 {
            let (x, y) = tokio::io::duplex(1 << 20);
            let (xr, xw) = tokio::io::split(x);
            let (yr, yw) = tokio::io::split(y);
            links[a].push(PeerStreams {
                peer: ids[b],
                reader: xr,
                writer: xw,
            });
            links[b].push(PeerStreams {
                peer: ids[a],
                reader: yr,
                writer: yw,
            });
        }
    }
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut tasks = Vec::new();
    let mut links = links.into_iter();
    let s_links = links.next().expect("sender links");
    let n = manifest.chunk_count();
    let s_swarm = Swarm::new(
        mono(),
        manifest.clone(),
        ids[0],
        Bitfield::full(n),
        SwarmConfig::default(),
        1,
    );
    let source = Store::Source(File::open(&src).expect("open"));
    let sender_task = tokio::spawn(run_with(s_swarm, source, s_links, Role::Sender));
    for (i, l) in links.enumerate() {
        let (store, have) = open_receiver(dirs[i].path(), &manifest).expect("open");
        let swarm = Swarm::new(
            mono(),
            manifest.clone(),
            ids[i + 1],
            have,
            SwarmConfig::default(),
            2 + i as u64,
        );
        tasks.push(tokio::spawn(run_with(swarm, store, l, RECEIVER)));
    }
    let dirs = [dirs[0].path(), dirs[1].path()];
    expect_delivered(sender_task, tasks, &data, "photo.raw", &dirs).await;
}

/// The same over real QUIC connections on loopback (one bidirectional stream per
/// pair of peers, each side's key proven by TLS), as the transport will carry it.
#[tokio::test]
async fn a_file_reaches_two_recipients_over_quic_streams() {
    use parley_net::{dial, make_endpoint, peer_id_of};
    let data: Vec<u8> = (0..4 << 20)
        .map(|i: u32| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    let src_dir = tempfile::tempdir().expect("tempdir");
    let src = src_dir.path().join("clip.bin");
    std::fs::write(&src, &data).expect("write");
    let idents = [
        Identity::from_seed(&[1; 32]),
        Identity::from_seed(&[2; 32]),
        Identity::from_seed(&[3; 32]),
    ];
    let manifest = Manifest::for_bytes(&idents[0], "clip.bin", &data).expect("manifest");
    let loopback = "127.0.0.1:0".parse().expect("addr");
    let endpoints: Vec<quinn::Endpoint> = idents
        .iter()
        .map(|id| make_endpoint(loopback, id, &[ALPN_FILE]).expect("endpoint"))
        .collect();
    let addrs: Vec<_> = endpoints
        .iter()
        .map(|e| e.local_addr().expect("addr"))
        .collect();
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut tasks = Vec::new();
    // Peer i dials every peer after it and accepts every peer before it; a dialed
    // stream becomes visible to the other side with its first frame (our bitfield).
    for i in 0..3 {
        let endpoint = endpoints[i].clone();
        let identity = idents[i].clone();
        let ids: Vec<PeerId> = idents.iter().map(Identity::peer_id).collect();
        let addrs = addrs.clone();
        let manifest = manifest.clone();
        let (store, have) = if i == 0 {
            let n = manifest.chunk_count();
            (
                Store::Source(File::open(&src).expect("open")),
                Bitfield::full(n),
            )
        } else {
            open_receiver(dirs[i - 1].path(), &manifest).expect("open")
        };
        tasks.push(tokio::spawn(async move {
            let mut conns = Vec::new();
            let mut peers = Vec::new();
            for _ in 0..i {
                let conn = endpoint
                    .accept()
                    .await
                    .expect("incoming")
                    .await
                    .expect("handshake");
                let peer = peer_id_of(&conn).expect("peer id");
                let (writer, reader) = conn.accept_bi().await.expect("stream");
                peers.push(PeerStreams {
                    peer,
                    reader,
                    writer,
                });
                conns.push(conn);
            }
            for j in i + 1..3 {
                let (conn, peer) = dial(
                    &endpoint,
                    &identity,
                    addrs[j],
                    ALPN_FILE,
                    Some(ids[j]),
                    Duration::from_secs(5),
                )
                .await
                .expect("dial");
                let (writer, reader) = conn.open_bi().await.expect("stream");
                peers.push(PeerStreams {
                    peer,
                    reader,
                    writer,
                });
                conns.push(conn);
            }
            let swarm = Swarm::new(
                mono(),
                manifest,
                ids[i],
                have,
                SwarmConfig::default(),
                i as u64,
            );
            let role = if i == 0 { Role::Sender } else { RECEIVER };
            let out = run_with(swarm, store, peers, role).await;
            // Let the last frames leave before the connections go.
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(conns);
            out
        }));
    }
    let mut tasks = tasks.into_iter();
    let sender = tasks.next().expect("sender");
    let dirs = [dirs[0].path(), dirs[1].path()];
    expect_delivered(sender, tasks.collect(), &data, "clip.bin", &dirs).await;
}
