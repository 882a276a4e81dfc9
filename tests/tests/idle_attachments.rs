//! Issue 9, acceptance 3: an idle attached client is cheap for its supernode. Twenty
//! idle `parley online` clients attach to one supernode through a counting UDP
//! forwarder, and every datagram at the supernode's port is counted over a window:
//! at most 10 per client per minute, both directions together. Each client must also
//! send often enough to keep a 30 s NAT mapping open.
//!
//! The intervals are the product's own (no test hooks): the window is 45 s.

use parley_e2e::udp_count::{CountingForwarder, Way};
use parley_e2e::{ClientHome, Supernode};
use std::time::{Duration, Instant};

const CLIENTS: usize = 20;
const WINDOW: Duration = Duration::from_secs(45);

#[test]
fn twenty_idle_clients_cost_their_supernode_at_most_ten_datagrams_a_minute_each() {
    let sn = Supernode::start("sn", &[]).unwrap();
    let forwarder = CountingForwarder::start(sn.quic).unwrap();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let name = format!("idle{i}");
        let home = ClientHome::new(&name).unwrap();
        let proc = home.online(&name, &[forwarder.addr()]).unwrap();
        clients.push((home, proc));
    }
    for (_, proc) in clients.iter_mut() {
        proc.wait_for(Duration::from_secs(60), |l| {
            l.contains("\"event\":\"published\"")
        })
        .unwrap();
    }
    // Let the attaching settle (handshakes, path MTU probes, the first publication).
    std::thread::sleep(Duration::from_secs(3));
    let from = Instant::now();
    std::thread::sleep(WINDOW);
    let to = Instant::now();
    for (_, proc) in clients.iter_mut() {
        assert!(proc.is_running(), "{} exited", proc.name);
    }

    let flows = forwarder.between(from, to);
    let total: usize = flows.values().map(Vec::len).sum();
    let minutes = to.duration_since(from).as_secs_f64() / 60.0;
    let per_client_min = total as f64 / CLIENTS as f64 / minutes;
    eprintln!(
        "RESULT datagrams={total} clients={CLIENTS} window_s={:.1} per_client_per_min={per_client_min:.2}",
        minutes * 60.0
    );
    assert!(
        per_client_min <= 10.0,
        "{per_client_min:.2} datagrams per client per minute (target: at most 10)"
    );

    // Every client is still heard from, and its NAT mapping stays fresh: no silence
    // from it of 30 s or more (a common home router's UDP timeout).
    let mut live = flows
        .values()
        .filter(|events| events.iter().any(|(_, w)| *w == Way::Down))
        .collect::<Vec<_>>();
    assert_eq!(live.len(), CLIENTS, "{flows:?}");
    for events in live.iter_mut() {
        let mut ups: Vec<Instant> = events
            .iter()
            .filter(|(_, w)| *w == Way::Up)
            .map(|(t, _)| *t)
            .collect();
        ups.insert(0, from);
        ups.push(to);
        let longest = ups
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .max()
            .unwrap_or_default();
        assert!(
            longest < Duration::from_secs(25),
            "a client was silent for {longest:?}"
        );
    }
}
