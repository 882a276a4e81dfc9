//! The process's one [`CallYield`] (`parley_proto::transfer::call_yield`): each call in
//! progress registers itself ([`CallPacing`]) and reports its RTT samples; transfer
//! streams ask [`pace`] before writing a piece and after reading one, so that while a
//! call runs every transfer of this client, up and down, keeps to the controller's rate.
//! Reading slower holds a sender that is not in a call to our pace too: QUIC's flow
//! control stops it once our receive window is full.
//!
//! Every transfer connection ([`register`]) also gets the send and receive windows the
//! controller asks for (`CallYield::windows`: a bounded *time* of data, so a call that
//! starts mid-transfer does not wait seconds for a backlog to drain).
//!
//! `PARLEY_TRANSFER_YIELD=0` switches pacing and windows off (quinn's defaults; to
//! measure what they buy: docs/performance.md).

use parley_net::clock::mono;
use parley_proto::transfer::call_yield::{CallYield, Windows, YieldConfig};
use quinn::{Connection, VarInt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

static YIELD: LazyLock<Mutex<CallYield>> =
    LazyLock::new(|| Mutex::new(CallYield::new(YieldConfig::default())));
static NEXT_CALL: AtomicU64 = AtomicU64::new(1);
static CONNS: LazyLock<Mutex<Vec<Connection>>> = LazyLock::new(Mutex::default);
/// The windows applied last.
static APPLIED: Mutex<Option<Windows>> = Mutex::new(None);

fn enabled() -> bool {
    static ON: LazyLock<bool> =
        LazyLock::new(|| std::env::var_os("PARLEY_TRANSFER_YIELD").is_none_or(|v| v != "0"));
    *ON
}

/// A call in progress, as transfers see it; the call ends for them when this drops.
pub struct CallPacing {
    id: u64,
}

impl CallPacing {
    /// Registers a call that has just connected.
    pub fn start() -> CallPacing {
        let id = NEXT_CALL.fetch_add(1, Ordering::Relaxed);
        if enabled() {
            super::lock(&YIELD).call_started(mono(), id);
        }
        CallPacing { id }
    }

    /// One RTT sample of this call (its media probes').
    pub fn rtt(&self, rtt: Duration) {
        if enabled() {
            super::lock(&YIELD).handle_rtt(mono(), self.id, rtt);
        }
    }
}

impl Drop for CallPacing {
    fn drop(&mut self) {
        super::lock(&YIELD).call_ended(self.id);
    }
}

/// Waits, while a call is in progress, until `bytes` of transfer data may go (or may
/// be taken in); at once otherwise.
pub async fn pace(bytes: usize) {
    let (wait, windows) = {
        let mut y = super::lock(&YIELD);
        (y.take(mono(), bytes), y.windows())
    };
    apply_windows(windows);
    if let Some(wait) = wait {
        tokio::time::sleep(wait).await;
    }
}

/// A transfer connection: its windows follow the controller's from now on.
pub fn register(conn: &Connection) {
    if !enabled() {
        return;
    }
    let windows = super::lock(&YIELD).windows();
    set_windows(conn, windows);
    let mut conns = super::lock(&CONNS);
    conns.retain(|c| c.close_reason().is_none());
    conns.push(conn.clone());
}

fn apply_windows(windows: Windows) {
    if !enabled() {
        return;
    }
    if super::lock(&APPLIED).replace(windows) == Some(windows) {
        return;
    }
    let mut conns = super::lock(&CONNS);
    conns.retain(|c| c.close_reason().is_none());
    for c in conns.iter() {
        set_windows(c, windows);
    }
}

fn set_windows(conn: &Connection, windows: Windows) {
    conn.set_send_window(windows.send);
    let receive = windows.receive.and_then(|w| VarInt::from_u64(w).ok());
    conn.set_receive_window(receive.unwrap_or(VarInt::MAX));
}

/// The current pace, bytes/s, while a call is in progress (for progress reports).
pub fn rate() -> Option<u64> {
    super::lock(&YIELD).rate()
}
