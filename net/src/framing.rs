//! One request and one reply per bidirectional stream, each a length-prefixed frame
//! (see `parley_proto::codec`).

use crate::NetError;
use parley_proto::codec::{frame_body_len, WireMessage};
use quinn::{Connection, RecvStream, SendStream};
use std::time::Duration;

/// Reads one frame and decodes it strictly.
pub async fn read_frame<M: WireMessage>(recv: &mut RecvStream) -> Result<M, NetError> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await?;
    let len = frame_body_len(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(M::decode(&body)?)
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
    let mut prefix = [0u8; 4];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = frame_body_len(prefix)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await?;
    Ok(Some(body))
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
