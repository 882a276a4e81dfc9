//! The start of a file connection: the dialer opens one bidirectional stream and
//! writes the transfer's signed manifest on it; after that the stream carries the
//! transfer's peer messages both ways ([`super::link`]).
//!
//! ```text
//! hello = manifest_len:u32be manifest        manifest_len ≤ MAX_MANIFEST_LEN (2 MiB + 4 KiB)
//! ```
//! The manifest is decoded strictly (`Manifest::decode`: version, signature, root,
//! chunk list, file name); the receiver then checks that it is the one its accepted
//! offer named (root, name, size, sender).

use super::link::{PeerStreams, ALPN_FILE};
use parley_net::{dial_with, Liveness};
use parley_proto::presence::CandidateAddr;
use parley_proto::transfer::manifest::MAX_MANIFEST_LEN;
use parley_proto::transfer::Manifest;
use parley_proto::{Identity, PeerId};
use quinn::{Connection, Endpoint, RecvStream, SendStream};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

/// One transfer connection's streams.
pub type QuicPeer = PeerStreams<RecvStream, SendStream>;

/// How long a direct dial to one candidate may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the other side may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Transfer connections notice a vanished peer fast (a killed recipient is re-offered
/// the file when it comes back): a keep-alive every second, dead after 5 s of silence.
/// The smaller idle timeout of the two ends applies to both.
const LIVENESS: Liveness = Liveness::Attachment {
    keep_alive: Duration::from_secs(1),
    idle: Duration::from_secs(5),
};

/// Dials `peer` at each of `candidates` at once (its key pinned, ALPN `parley-file/1`),
/// keeps the first that answers, and writes the hello. Returns the connection (keep
/// it while the transfer runs) and its streams.
pub async fn dial(
    endpoint: &Endpoint,
    identity: &Identity,
    peer: PeerId,
    candidates: &[CandidateAddr],
    manifest: &Manifest,
) -> Result<(Connection, QuicPeer), String> {
    let mut tries = JoinSet::new();
    let mut seen = Vec::new();
    for c in candidates {
        if seen.contains(&c.addr) {
            continue;
        }
        seen.push(c.addr);
        let (endpoint, identity, addr) = (endpoint.clone(), identity.clone(), c.addr);
        tries.spawn(async move {
            dial_with(
                &endpoint,
                &identity,
                addr,
                ALPN_FILE,
                Some(peer),
                DIAL_TIMEOUT,
                LIVENESS,
            )
            .await
        });
    }
    let mut last = "no candidate addresses".to_string();
    let conn = loop {
        match tries.join_next().await {
            Some(Ok(Ok((conn, _)))) => break conn,
            Some(Ok(Err(e))) => last = e.to_string(),
            Some(Err(_)) => {}
            None => return Err(format!("no direct path: {last}")),
        }
    };
    tries.abort_all();
    super::pace::register(&conn);
    let (mut writer, reader) = conn.open_bi().await.map_err(|e| e.to_string())?;
    write_hello(&mut writer, manifest)
        .await
        .map_err(|e| format!("sending the manifest: {e}"))?;
    Ok((
        conn,
        PeerStreams {
            peer,
            reader,
            writer,
        },
    ))
}

/// Takes the first stream of an accepted file connection and reads its hello.
pub async fn accept(conn: &Connection, peer: PeerId) -> io::Result<(QuicPeer, Manifest)> {
    super::pace::register(conn);
    let read = async {
        let (writer, mut reader) = conn.accept_bi().await?;
        let manifest = read_hello(&mut reader).await?;
        Ok::<_, io::Error>((
            PeerStreams {
                peer,
                reader,
                writer,
            },
            manifest,
        ))
    };
    tokio::time::timeout(HELLO_TIMEOUT, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no manifest in time"))?
}

/// Writes `hello`.
pub async fn write_hello(
    w: &mut (impl tokio::io::AsyncWrite + Unpin),
    manifest: &Manifest,
) -> io::Result<()> {
    let bytes = manifest.encode();
    w.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    w.write_all(&bytes).await
}

/// Reads `hello`: a bounded length, then a manifest that must decode strictly.
pub async fn read_hello(r: &mut (impl tokio::io::AsyncRead + Unpin)) -> io::Result<Manifest> {
    let len = r.read_u32().await? as usize;
    if len > MAX_MANIFEST_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("manifest of {len} bytes is over the {MAX_MANIFEST_LEN}-byte limit"),
        ));
    }
    let mut bytes = vec![0; len];
    r.read_exact(&mut bytes).await?;
    Manifest::decode(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hello_carries_the_manifest_and_refuses_what_is_not_one() {
        let m = Manifest::for_bytes(&Identity::from_seed(&[1; 32]), "a.txt", b"hello")
            .expect("manifest");
        let mut buf = Vec::new();
        write_hello(&mut buf, &m).await.expect("write");
        let got = read_hello(&mut &buf[..]).await.expect("read");
        assert_eq!(got.root(), m.root());
        // Over the limit: refused before reading the body.
        let huge = ((MAX_MANIFEST_LEN + 1) as u32).to_be_bytes();
        let e = read_hello(&mut &huge[..]).await.expect_err("too long");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        // A flipped byte breaks the signature or the encoding.
        let mut bad = buf.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(read_hello(&mut &bad[..]).await.is_err());
        // Truncated.
        assert!(read_hello(&mut &buf[..buf.len() - 3]).await.is_err());
    }
}
