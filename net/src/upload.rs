//! The client's side of an upload probe (issue 10; the protocol, the supernode's
//! meter and the arithmetic are `parley_proto::upload`): a new stream on the client's
//! attachment carrying [`UploadProbe`], then at most `max_bytes` bytes of padding,
//! then the supernode's [`UploadReply`].

use crate::framing::read_frame_from;
use crate::{send_frame, NetError};
use parley_proto::upload::{UploadProbe, UploadReply};
use quinn::{Connection, WriteError};
use std::time::Duration;

/// Padding written per step (QUIC flow control paces it: the supernode's stream
/// window, 128 KiB by default, is what is ever buffered ahead).
const PADDING_CHUNK: usize = 64 * 1024;

/// Runs one probe of at most `max_bytes` against the supernode at the other end of
/// `conn`, within `timeout` in all; returns its reply (checked:
/// [`UploadReply::decode_checked`]). The supernode stops the stream when it has
/// counted enough (its byte or time limit); that ends the padding early, as does a
/// refusal.
pub async fn measure_upload(
    conn: &Connection,
    max_bytes: u32,
    timeout: Duration,
) -> Result<UploadReply, NetError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await?;
        send_frame(&mut send, &UploadProbe { max_bytes }).await?;
        let padding = vec![0u8; PADDING_CHUNK];
        let mut left = max_bytes as usize;
        while left > 0 {
            let n = left.min(PADDING_CHUNK);
            match send.write_all(&padding[..n]).await {
                Ok(()) => left -= n,
                // Stopped: the supernode counted what it wanted (or refused).
                Err(WriteError::Stopped(_)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let _ = send.finish();
        match read_frame_from(&mut recv).await? {
            Some(body) => Ok(UploadReply::decode_checked(&body)?),
            None => Err(NetError::Read(quinn::ReadExactError::FinishedEarly(0))),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| NetError::Timeout(timeout))?
}
