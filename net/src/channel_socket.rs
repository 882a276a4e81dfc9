//! The receiving half shared by quinn sockets that are channels, not UDP sockets: the
//! TCP tunnel (`tcp_tunnel`) and a file transfer's QUIC inside relay datagrams (the
//! client's `transfer::relayed`). One queued datagram becomes one received packet.

use bytes::Bytes;
use quinn::udp::RecvMeta;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// `AsyncUdpSocket::poll_recv` over `rx`: the next item, split by `source` into the
/// sender's address and the datagram, fills the first buffer (truncated to it, as UDP
/// would). A closed channel is `BrokenPipe` with `closed` as its message.
pub fn poll_recv<T>(
    rx: &Mutex<mpsc::Receiver<T>>,
    cx: &mut Context<'_>,
    bufs: &mut [IoSliceMut<'_>],
    meta: &mut [RecvMeta],
    source: impl FnOnce(T) -> (SocketAddr, Bytes),
    closed: &'static str,
) -> Poll<io::Result<usize>> {
    let (Some(buf), Some(m)) = (bufs.first_mut(), meta.first_mut()) else {
        return Poll::Ready(Ok(0));
    };
    let mut rx = rx.lock().unwrap_or_else(|p| p.into_inner());
    match rx.poll_recv(cx) {
        Poll::Ready(Some(item)) => {
            let (from, datagram) = source(item);
            let n = datagram.len().min(buf.len());
            buf[..n].copy_from_slice(&datagram[..n]);
            *m = RecvMeta {
                addr: from,
                len: n,
                stride: n,
                ecn: None,
                dst_ip: None,
            };
            Poll::Ready(Ok(1))
        }
        Poll::Ready(None) => Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, closed))),
        Poll::Pending => Poll::Pending,
    }
}
