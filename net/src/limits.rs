//! Admission caps shared by the servers: live connections per source IP and in total.
//!
//! A server asks [`ConnLimiter::try_acquire`] for each new connection and holds the
//! returned [`ConnPermit`] for the connection's life; dropping it frees the slot. The
//! per-IP cap stops one host from taking every slot; the total cap bounds memory. Both
//! defaults are set by the servers, generously: a household or office behind one NAT
//! address, and test suites with dozens of clients on 127.0.0.1, stay far below them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum Refused {
    /// This source address already holds its share.
    #[error("too many connections from {ip} (cap {cap} per address)")]
    PerIp {
        /// The source address.
        ip: IpAddr,
        /// The per-address cap.
        cap: usize,
    },
    /// The server is full.
    #[error("too many connections in total (cap {0})")]
    Total(usize),
}

#[derive(Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

/// Live connection counts with caps per source IP and in total.
#[derive(Clone)]
pub struct ConnLimiter {
    per_ip_cap: usize,
    total_cap: usize,
    counts: Arc<Mutex<Counts>>,
}

/// A held slot; dropping it frees the slot.
pub struct ConnPermit {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl ConnLimiter {
    /// At most `per_ip` live connections from one address and `total` overall.
    pub fn new(per_ip: usize, total: usize) -> ConnLimiter {
        ConnLimiter {
            per_ip_cap: per_ip,
            total_cap: total,
            counts: Arc::default(),
        }
    }

    /// A slot for a connection from `ip`, or why not.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= self.total_cap {
            return Err(Refused::Total(self.total_cap));
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.per_ip_cap {
            return Err(Refused::PerIp {
                ip,
                cap: self.per_ip_cap,
            });
        }
        *n += 1;
        c.total += 1;
        Ok(ConnPermit {
            ip,
            counts: self.counts.clone(),
        })
    }

    /// Live connections (total, from `ip`).
    pub fn live(&self, ip: IpAddr) -> (usize, usize) {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (c.total, c.per_ip.get(&ip).copied().unwrap_or(0))
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total_and_slots_come_back() {
        let l = ConnLimiter::new(2, 3);
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let a1 = l.try_acquire(a).unwrap();
        let _a2 = l.try_acquire(a).unwrap();
        assert_eq!(
            l.try_acquire(a).err(),
            Some(Refused::PerIp { ip: a, cap: 2 })
        );
        let _b1 = l.try_acquire(b).unwrap();
        assert_eq!(l.try_acquire(b).err(), Some(Refused::Total(3)));
        drop(a1);
        assert_eq!(l.live(a), (2, 1));
        assert!(l.try_acquire(b).is_ok());
    }
}
