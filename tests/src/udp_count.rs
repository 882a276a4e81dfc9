//! A counting UDP forwarder to put in front of a server: clients send to
//! [`CountingForwarder::addr`], each client (source address) gets its own upstream
//! socket, and every datagram each way is timestamped, so a test can count what the
//! server's port sends and receives per client over a window.
//!
//! Plain threads and blocking sockets with short read timeouts: it stops when dropped.

use anyhow::Result;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which way a datagram went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

type Log = Arc<Mutex<HashMap<SocketAddr, Vec<(Instant, Way)>>>>;

/// A running forwarder; stops when dropped.
pub struct CountingForwarder {
    addr: SocketAddr,
    log: Log,
    stop: Arc<AtomicBool>,
}

const POLL: Duration = Duration::from_millis(100);

impl CountingForwarder {
    /// Forwards datagrams sent to a new loopback port to `server`.
    pub fn start(server: SocketAddr) -> Result<CountingForwarder> {
        let front = UdpSocket::bind("127.0.0.1:0")?;
        front.set_read_timeout(Some(POLL))?;
        let addr = front.local_addr()?;
        let log: Log = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (log2, stop2) = (log.clone(), stop.clone());
        std::thread::spawn(move || serve(front, server, log2, stop2));
        Ok(CountingForwarder { addr, log, stop })
    }

    /// Where clients send.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Per client: the datagrams each way within `[from, to)`, with their times.
    pub fn between(&self, from: Instant, to: Instant) -> HashMap<SocketAddr, Vec<(Instant, Way)>> {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.iter()
            .map(|(client, events)| {
                let within = events
                    .iter()
                    .filter(|(t, _)| *t >= from && *t < to)
                    .copied()
                    .collect();
                (*client, within)
            })
            .collect()
    }
}

impl Drop for CountingForwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn record(log: &Log, client: SocketAddr, way: Way) {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(client)
        .or_default()
        .push((Instant::now(), way));
}

fn serve(front: UdpSocket, server: SocketAddr, log: Log, stop: Arc<AtomicBool>) {
    let front = Arc::new(front);
    let mut upstream: HashMap<SocketAddr, UdpSocket> = HashMap::new();
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, client)) = front.recv_from(&mut buf) else {
            continue;
        };
        if let std::collections::hash_map::Entry::Vacant(slot) = upstream.entry(client) {
            let Ok(up) = UdpSocket::bind("127.0.0.1:0") else {
                continue;
            };
            if up.connect(server).is_err() || up.set_read_timeout(Some(POLL)).is_err() {
                continue;
            }
            let Ok(back) = up.try_clone() else { continue };
            let (front, log, stop) = (front.clone(), log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buf) {
                        record(&log, client, Way::Down);
                        let _ = front.send_to(&buf[..n], client);
                    }
                }
            });
            slot.insert(up);
        }
        record(&log, client, Way::Up);
        if let Some(up) = upstream.get(&client) {
            let _ = up.send(&buf[..n]);
        }
    }
}
