//! The supernode's side of upload probes (issue 10; the protocol, limits and meter are
//! `parley_proto::upload`, the client's side `parley_net::upload`): admit the probe
//! ([`UploadGuard`]: bytes per probe, probes per key and per IP an hour, never over the
//! TCP tunnel), count the padding for at most the limit's duration, stop the stream,
//! answer with the samples.

use parley_net::clock::mono;
use parley_net::{write_frame, NetError};
use parley_proto::codec::WireMessage;
use parley_proto::messages::{Refusal, RefusalCode};
use parley_proto::presence::Contact;
use parley_proto::upload::{UploadGuard, UploadLimits, UploadProbe, UploadReply};
use quinn::{ReadExactError, RecvStream, SendStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Upload probes: what the server's stream handler calls.
#[derive(Clone)]
pub struct Upload {
    guard: Arc<Mutex<UploadGuard>>,
    /// The meter's clock origin (it wants microseconds; `mono()` has milliseconds).
    origin: Instant,
}

impl Upload {
    pub fn new(limits: UploadLimits) -> Upload {
        Upload {
            guard: Arc::new(Mutex::new(UploadGuard::new(limits))),
            origin: Instant::now(),
        }
    }

    /// Serves a stream whose first frame `first` is an [`UploadProbe`] from the client
    /// `from` (`tunnelled`: over the TCP fallback).
    pub async fn serve(
        &self,
        from: Contact,
        tunnelled: bool,
        first: &[u8],
        mut send: SendStream,
        mut recv: RecvStream,
    ) -> Result<(), NetError> {
        let admitted = match UploadProbe::decode(first) {
            Ok(probe) => {
                let mut guard = self.guard.lock().unwrap_or_else(|p| p.into_inner());
                let at = self.origin.elapsed();
                guard.admit(mono(), at, from.id, from.addr.ip(), tunnelled, &probe)
            }
            Err(e) => Err(Refusal {
                code: RefusalCode::Malformed,
                message: e.to_string(),
            }),
        };
        let mut meter = match admitted {
            Ok(meter) => meter,
            Err(refusal) => {
                tracing::debug!(peer = %from.addr, why = %refusal.message, "upload probe refused");
                let _ = recv.stop(0u32.into());
                return write_frame(&mut send, &UploadReply::Refused(refusal)).await;
            }
        };
        loop {
            let now = self.origin.elapsed();
            if meter.is_done(now) {
                break;
            }
            let left = meter.poll_timeout().saturating_sub(now);
            match tokio::time::timeout(left, recv.read_chunk(meter.wanted(), false)).await {
                Ok(Ok(Some(chunk))) => meter.handle_data(self.origin.elapsed(), chunk.bytes.len()),
                Ok(Ok(None)) | Err(_) => meter.handle_end(self.origin.elapsed()),
                Ok(Err(e)) => return Err(NetError::Read(ReadExactError::ReadError(e))),
            }
        }
        // Whatever the client still sends is not wanted.
        let _ = recv.stop(0u32.into());
        let report = meter.report(self.origin.elapsed());
        tracing::debug!(peer = %from.addr, bytes = report.bytes(), kbps = ?report.kbps(), "upload probe counted");
        write_frame(&mut send, &UploadReply::Measured(report)).await
    }
}

#[cfg(test)]
#[path = "upload_tests.rs"]
mod tests;
