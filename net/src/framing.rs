//! One request and one reply per bidirectional stream, each a length-prefixed frame
//! (see `parley_proto::codec`).
//!
//! Frame bodies are read in chunks of at most [`READ_CHUNK`] bytes and the buffer grows
//! as bytes arrive: a peer that sends a 4-byte prefix claiming 64 KiB and then nothing
//! costs us at most one chunk, not the claimed length. Servers put a deadline on the
//! whole frame with [`read_raw_frame_within`].

use crate::NetError;
use parley_proto::codec::{frame_body_len, WireMessage};
use quinn::{Connection, ReadError, ReadExactError, RecvStream, SendStream};
use std::time::Duration;

/// Most bytes read from a stream in one step; the body buffer grows by what arrives.
pub const READ_CHUNK: usize = 4096;

/// Something frames can be read from: a QUIC receive stream, or a test double.
pub(crate) trait ChunkSource {
    /// Up to `buf.len()` bytes; `None` at the end of the stream.
    async fn read_chunk(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReadError>;
}

impl ChunkSource for RecvStream {
    async fn read_chunk(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
        self.read(buf).await
    }
}

/// The frame body (the envelope), or `None` if the stream ended cleanly before a frame
/// began. A stream that ends inside a frame is `FinishedEarly(bytes of that part)`.
pub(crate) async fn read_frame_from(
    src: &mut impl ChunkSource,
) -> Result<Option<Vec<u8>>, NetError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        match src.read_chunk(&mut prefix[got..]).await {
            Ok(Some(n)) => got += n,
            Ok(None) if got == 0 => return Ok(None),
            Ok(None) => return Err(NetError::Read(ReadExactError::FinishedEarly(got))),
            Err(e) => return Err(NetError::Read(ReadExactError::ReadError(e))),
        }
    }
    let len = frame_body_len(prefix)?;
    let mut body = Vec::with_capacity(len.min(READ_CHUNK));
    let mut chunk = [0u8; READ_CHUNK];
    while body.len() < len {
        let want = (len - body.len()).min(READ_CHUNK);
        match src.read_chunk(&mut chunk[..want]).await {
            Ok(Some(n)) => body.extend_from_slice(&chunk[..n]),
            Ok(None) => return Err(NetError::Read(ReadExactError::FinishedEarly(body.len()))),
            Err(e) => return Err(NetError::Read(ReadExactError::ReadError(e))),
        }
    }
    Ok(Some(body))
}

/// Reads one frame and decodes it strictly.
pub async fn read_frame<M: WireMessage>(recv: &mut RecvStream) -> Result<M, NetError> {
    match read_frame_from(recv).await? {
        Some(body) => Ok(M::decode(&body)?),
        None => Err(NetError::Read(ReadExactError::FinishedEarly(0))),
    }
}

/// Writes one frame and finishes the stream.
pub async fn write_frame<M: WireMessage>(send: &mut SendStream, msg: &M) -> Result<(), NetError> {
    send.write_all(&msg.encode_frame()).await?;
    send.finish()?;
    Ok(())
}

/// Sends `req` on a new stream and waits up to `timeout` for the reply.
pub async fn request<Req: WireMessage, Rep: WireMessage>(
    conn: &Connection,
    req: &Req,
    timeout: Duration,
) -> Result<Rep, NetError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        write_frame(&mut send, req).await?;
        read_frame(&mut recv).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| NetError::Timeout(timeout))?
}

/// Reads one frame without decoding it: for routers that dispatch on the kind byte or
/// pass frames along. Returns `None` at a clean end of stream.
pub async fn read_raw_frame(recv: &mut RecvStream) -> Result<Option<Vec<u8>>, NetError> {
    read_frame_from(recv).await
}

/// [`read_raw_frame`] with a deadline for the whole frame (`NetError::Timeout` after
/// `timeout`): a peer that trickles or stalls cannot hold a server task forever.
pub async fn read_raw_frame_within(
    recv: &mut RecvStream,
    timeout: Duration,
) -> Result<Option<Vec<u8>>, NetError> {
    tokio::time::timeout(timeout, read_frame_from(recv))
        .await
        .map_err(|_| NetError::Timeout(timeout))?
}

/// The kind byte of an envelope (see `parley_proto::codec`), if it has one.
pub fn envelope_kind(envelope: &[u8]) -> Option<u8> {
    envelope.get(1).copied()
}

/// Writes one message as a frame without finishing the stream (for multi-frame streams).
pub async fn send_frame<M: WireMessage>(send: &mut SendStream, msg: &M) -> Result<(), NetError> {
    send.write_all(&msg.encode_frame()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parley_proto::codec::MAX_MESSAGE_LEN;

    /// Hands out `data` in pieces and records the largest buffer it was offered.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        piece: usize,
        largest_ask: usize,
    }

    impl ChunkSource for Trickle {
        async fn read_chunk(&mut self, buf: &mut [u8]) -> Result<Option<usize>, ReadError> {
            self.largest_ask = self.largest_ask.max(buf.len());
            if self.at == self.data.len() {
                return Ok(None);
            }
            let n = buf.len().min(self.piece).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(Some(n))
        }
    }

    fn trickle(data: Vec<u8>, piece: usize) -> Trickle {
        Trickle {
            data,
            at: 0,
            piece,
            largest_ask: 0,
        }
    }

    #[tokio::test]
    async fn a_large_length_prefix_is_not_allocated_up_front() {
        // The prefix claims the largest frame; only 10 bytes follow.
        let mut data = (MAX_MESSAGE_LEN as u32).to_be_bytes().to_vec();
        data.extend_from_slice(&[7; 10]);
        let mut src = trickle(data, 3);
        let err = read_frame_from(&mut src).await.unwrap_err();
        assert!(matches!(
            err,
            NetError::Read(ReadExactError::FinishedEarly(10))
        ));
        assert!(
            src.largest_ask <= READ_CHUNK,
            "asked for {}",
            src.largest_ask
        );
    }

    #[tokio::test]
    async fn frames_arriving_in_pieces_are_reassembled() {
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut data = (body.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(&body);
        let mut src = trickle(data, 1000);
        assert_eq!(read_frame_from(&mut src).await.unwrap(), Some(body));
        assert_eq!(read_frame_from(&mut src).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_stream_ending_inside_the_prefix_is_an_error() {
        let mut src = trickle(vec![0, 0], 1);
        assert!(matches!(
            read_frame_from(&mut src).await,
            Err(NetError::Read(ReadExactError::FinishedEarly(2)))
        ));
        let mut empty = trickle(vec![], 1);
        assert_eq!(read_frame_from(&mut empty).await.unwrap(), None);
    }
}
