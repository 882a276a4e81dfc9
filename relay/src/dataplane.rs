//! The data plane: media channel datagrams in, the partner's datagrams out, on every
//! core. See docs/relay.md ("Data plane").
//!
//! One UDP socket per core, all bound to the same data port with `SO_REUSEPORT`: the
//! kernel spreads the clients over them by address hash, and each socket has a thread
//! of its own that reads up to [`BATCH`] datagrams per `recvmmsg`, asks the shared
//! [`ChannelTable`] about each, and sends the results with one `sendmmsg`. Receive
//! buffers are allocated once per thread and forwarded datagrams are rewritten in
//! place: nothing is allocated per datagram, and no lock is shared between threads
//! beyond the two legs' own slots in the table. (Any of the sockets may send to any
//! client: they share the port.)
//!
//! A partner without a proven channel address (a leg tunnelled over TCP) gets the
//! payload as a QUIC datagram on its connection through the switch: the slow kind.

use crate::switch::Switch;
use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrLike, SockaddrStorage};
use parley_proto::relay::channel::MAX_DATAGRAM;
use parley_proto::relay::{ChannelTable, ChannelVerdict, DropReason, RelayStats};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Datagrams per `recvmmsg` / `sendmmsg`.
pub const BATCH: usize = 32;
/// How long a thread waits for datagrams before checking for shutdown and publishing
/// its counters.
const POLL: Duration = Duration::from_millis(50);
/// Counters are published at least this often while busy.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// Receive buffer slack: a datagram longer than [`MAX_DATAGRAM`] is truncated to this
/// and then refused as malformed.
const BUF: usize = MAX_DATAGRAM + 1;

/// The data plane's threads and their counters.
pub(crate) struct DataPlane {
    /// The bound data address.
    pub addr: SocketAddr,
    /// A socket on the data port for the slow path (QUIC legs to channel partners).
    pub sender: UdpSocket,
    shards: Vec<Arc<Mutex<RelayStats>>>,
    stop: Arc<AtomicBool>,
}

impl DataPlane {
    /// Binds `threads` sockets on `bind` (port 0: one ephemeral port for all) and
    /// starts a thread on each.
    pub fn start(
        bind: SocketAddr,
        threads: usize,
        table: Arc<ChannelTable>,
        switch: Arc<Switch>,
    ) -> std::io::Result<DataPlane> {
        let first = reuseport_socket(bind)?;
        let addr = first.local_addr()?;
        let mut sockets = vec![first];
        for _ in 1..threads.max(1) {
            sockets.push(reuseport_socket(addr)?);
        }
        let sender = sockets[0].try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut shards = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            let stats = Arc::new(Mutex::new(RelayStats::default()));
            shards.push(stats.clone());
            let shard = Shard {
                socket,
                table: table.clone(),
                switch: switch.clone(),
                stats,
                stop: stop.clone(),
            };
            std::thread::Builder::new()
                .name(format!("relay-data-{i}"))
                .spawn(move || shard.run())?;
        }
        Ok(DataPlane {
            addr,
            sender,
            shards,
            stop,
        })
    }

    /// The data plane's counters, summed over its threads.
    pub fn stats(&self) -> RelayStats {
        let mut total = RelayStats::default();
        for s in &self.shards {
            total.merge(&s.lock().unwrap_or_else(PoisonError::into_inner));
        }
        total
    }
}

impl DataPlane {
    /// Stops the threads (within [`POLL`]).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn reuseport_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    let _ = socket.set_recv_buffer_size(crate::endpoint::SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(crate::endpoint::SOCKET_BUFFER);
    socket.set_read_timeout(Some(POLL))?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

struct Shard {
    socket: UdpSocket,
    table: Arc<ChannelTable>,
    switch: Arc<Switch>,
    stats: Arc<Mutex<RelayStats>>,
    stop: Arc<AtomicBool>,
}

/// What to send for one received datagram: its buffer index, byte range, destination.
#[derive(Clone, Copy)]
struct Out {
    /// A forwarded datagram (counted as undelivered if the kernel refuses it), not an answer.
    forward: bool,
    buf: usize,
    start: usize,
    end: usize,
    to: SockaddrStorage,
}

impl Shard {
    fn run(self) {
        let fd = self.socket.as_raw_fd();
        let mut bufs = vec![[0u8; BUF]; BATCH];
        let mut lens = [(0usize, None::<SocketAddr>); BATCH];
        let mut outs: Vec<Out> = Vec::with_capacity(BATCH);
        let mut addrs: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
        let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut local = RelayStats::default();
        let mut published = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let received = {
                let mut slices: Vec<[IoSliceMut<'_>; 1]> = bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut recv_headers,
                    slices.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(results) => {
                        let mut n = 0;
                        for (i, msg) in results.enumerate() {
                            lens[i] = (msg.bytes, msg.address.and_then(to_std));
                            n = i + 1;
                        }
                        n
                    }
                    Err(_) => 0,
                }
            };
            let now = Instant::now();
            outs.clear();
            for (i, buf) in bufs.iter_mut().enumerate().take(received) {
                let (len, from) = lens[i];
                let Some(from) = from else { continue };
                let packet = &mut buf[..len.min(BUF)];
                match self.table.handle_datagram(now, from, packet, &mut local) {
                    ChannelVerdict::Send { to, range } => outs.push(Out {
                        forward: true,
                        buf: i,
                        start: range.start,
                        end: range.end,
                        to: to.into(),
                    }),
                    ChannelVerdict::Answer { to, len } => outs.push(Out {
                        forward: false,
                        buf: i,
                        start: 0,
                        end: len,
                        to: to.into(),
                    }),
                    ChannelVerdict::ToLeg { leg, range } => {
                        if let Err(reason) = self.switch.send_to_leg(leg, &packet[range.clone()]) {
                            local.count_undelivered(reason, range.len());
                        }
                    }
                    ChannelVerdict::Drop(_) => {}
                }
            }
            self.send_all(fd, &bufs, &outs, &mut addrs, &mut send_headers, &mut local);
            if received == 0 || published.elapsed() >= PUBLISH_EVERY {
                let mut shared = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
                shared.merge(&local);
                local = RelayStats::default();
                published = Instant::now();
            }
        }
    }

    /// Sends every `outs` entry with as few `sendmmsg` calls as the kernel allows; a
    /// datagram the kernel refuses is counted and skipped.
    fn send_all(
        &self,
        fd: i32,
        bufs: &[[u8; BUF]],
        outs: &[Out],
        addrs: &mut Vec<Option<SockaddrStorage>>,
        headers: &mut MultiHeaders<SockaddrStorage>,
        stats: &mut RelayStats,
    ) {
        let mut next = 0;
        while next < outs.len() {
            let pending = &outs[next..];
            addrs.clear();
            addrs.extend(pending.iter().map(|o| Some(o.to)));
            let slices: Vec<[IoSlice<'_>; 1]> = pending
                .iter()
                .map(|o| [IoSlice::new(&bufs[o.buf][o.start..o.end])])
                .collect();
            match sendmmsg(fd, headers, &slices, &addrs[..], [], MsgFlags::MSG_DONTWAIT) {
                Ok(results) => {
                    let sent = results.count();
                    next += sent.max(1);
                    if sent == 0 {
                        uncount(stats, &pending[0]);
                    }
                }
                Err(_) => {
                    // The first one failed (full buffer, unreachable): drop it, go on.
                    uncount(stats, &pending[0]);
                    next += 1;
                }
            }
        }
    }
}

fn uncount(stats: &mut RelayStats, out: &Out) {
    if out.forward {
        stats.count_undelivered(DropReason::Congested, out.end - out.start);
    }
}

fn to_std(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddr::V6((*v6).into()))
        .filter(|_| addr.family().is_some())
}
