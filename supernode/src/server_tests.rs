//! A live supernode against hostile and ordinary clients: admission caps, request
//! timeouts, relay grants only after ringing and within quotas, and no dialing of
//! addresses a caller names.

use super::*;
use parley_net::{dial, make_endpoint, read_frame, send_frame};
use parley_proto::call::signal::{CallOffer, SignedOffer};
use parley_proto::quota::Quota;
use parley_proto::relay::messages::{RelayToSupernode, SupernodeToRelay};
use parley_proto::relay::{CallId, RelayLoad, ALPN_RELAY_REPORT};

struct Running {
    bound: Bound,
    relays: RelayDirectory,
    _stop: watch::Sender<bool>,
}

async fn supernode(limits: Limits) -> Running {
    // Empty: the relays the tests add by hand are pinned as they are added.
    supernode_with(limits, RelayDirectory::new([])).await
}

async fn supernode_with(limits: Limits, relays: RelayDirectory) -> Running {
    let (stop, stop_rx) = watch::channel(false);
    let any = "127.0.0.1:0".parse().unwrap();
    let params = ServerParams {
        limits,
        ..ServerParams::new(Identity::generate(), any, any)
    };
    let (bound, serve) = start_with(params, relays.clone(), stop_rx).await.unwrap();
    tokio::spawn(serve);
    Running {
        bound,
        relays,
        _stop: stop,
    }
}

/// A fresh relay in the directory, so that grants have something to name.
fn add_relay(r: &Running) {
    let id = Identity::generate().peer_id();
    let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let load = RelayLoad {
        relay: id,
        listen: addr,
        calls: 0,
        legs: 0,
        max_legs: 100,
        tcp: None,
    };
    r.relays.pin(id);
    r.relays.update(driver::now(), Contact { id, addr }, load);
}

struct Client {
    id: Identity,
    conn: Connection,
}

async fn attach(r: &Running) -> Result<Client, NetError> {
    let id = Identity::generate();
    let ep = make_endpoint("127.0.0.1:0".parse().unwrap(), &id, &[]).unwrap();
    let (conn, _) = dial(
        &ep,
        &id,
        r.bound.quic,
        ALPN_CLIENT,
        Some(r.bound.id),
        Duration::from_secs(5),
    )
    .await?;
    Ok(Client { id, conn })
}

/// The bystander check: this client's attachment still answers requests.
async fn answers(c: &Client) -> bool {
    let reply = parley_net::request::<_, SupernodeToClient>(
        &c.conn,
        &ClientToSupernode::Hello,
        Duration::from_secs(5),
    )
    .await;
    matches!(reply, Ok(SupernodeToClient::Welcome { .. }))
}

fn offer(caller: &Identity, callee: PeerId) -> SignedOffer {
    CallOffer {
        call_id: CallId::random(),
        caller: caller.peer_id(),
        callee,
        caller_name: "caller".into(),
        candidates: vec![],
        handshake: vec![],
        sent_at: driver::now(),
        purpose: parley_proto::call::signal::OfferPurpose::Call,
    }
    .sign(caller)
}

async fn place(
    c: &Client,
    callee: PeerId,
    via: Vec<Contact>,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = c.conn.open_bi().await.unwrap();
    let place = CallSignal::Place {
        offer: offer(&c.id, callee),
        via,
    };
    send_frame(&mut send, &place).await.unwrap();
    (send, recv)
}

async fn next(recv: &mut quinn::RecvStream) -> Option<CallSignal> {
    tokio::time::timeout(Duration::from_secs(10), read_frame::<CallSignal>(recv))
        .await
        .ok()?
        .ok()
}

#[tokio::test]
async fn connections_over_the_per_address_cap_are_refused_and_the_others_stay_up() {
    let r = supernode(Limits {
        conns_per_ip: 3,
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(attach(&r).await.unwrap());
    }
    assert!(
        attach(&r).await.is_err(),
        "a fourth connection from 127.0.0.1"
    );
    for c in &held {
        assert!(answers(c).await, "admitted clients are served");
    }
    // A closed connection frees its slot.
    let gone = held.pop().unwrap();
    gone.conn.close(0u32.into(), b"bye");
    drop(gone);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(c) = attach(&r).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answers(&again.expect("the slot came back")).await);
}

#[tokio::test]
async fn a_stalled_request_is_dropped_and_the_connection_still_served() {
    let r = supernode(Limits {
        request_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let c = attach(&r).await.unwrap();
    let (mut send, mut recv) = c.conn.open_bi().await.unwrap();
    // A length prefix promising 60 kB, then silence.
    send.write_all(&60_000u32.to_be_bytes()).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await;
    assert!(ended.is_ok(), "the server gave up on the stalled stream");
    assert!(answers(&c).await, "the connection itself is still served");
}

#[tokio::test]
async fn relay_tokens_are_granted_only_once_the_callee_rings() {
    let r = supernode(Limits::default()).await;
    add_relay(&r);
    let (alice, bob) = (attach(&r).await.unwrap(), attach(&r).await.unwrap());
    // A call to someone who is not online: no tokens, just "unreachable".
    let nobody = Identity::generate().peer_id();
    let (_s, mut recv) = place(&alice, nobody, vec![]).await;
    assert!(matches!(
        next(&mut recv).await,
        Some(CallSignal::Unreachable(_))
    ));
    assert!(next(&mut recv).await.is_none(), "nothing after it");

    // A call to bob: the offer reaches bob without tokens.
    let (_s, mut to_alice) = place(&alice, bob.id.peer_id(), vec![]).await;
    let (mut to_bob, mut from_alice) = bob.conn.accept_bi().await.unwrap();
    match next(&mut from_alice).await {
        Some(CallSignal::Incoming { relays, .. }) => assert!(relays.is_empty()),
        other => panic!("{other:?}"),
    }
    // Until bob rings, alice hears nothing...
    let early = tokio::time::timeout(
        Duration::from_millis(300),
        read_frame::<CallSignal>(&mut to_alice),
    );
    assert!(early.await.is_err(), "no grant before ringing");
    // ...and once he does, both get the same grant, alice before the ringing.
    send_frame(&mut to_bob, &CallSignal::Ringing).await.unwrap();
    let granted = match next(&mut to_alice).await {
        Some(CallSignal::RelayGranted(g)) => g,
        other => panic!("{other:?}"),
    };
    assert_eq!(granted.len(), 1);
    let t = &granted[0].token.token;
    assert_eq!(t.parties, [alice.id.peer_id(), bob.id.peer_id()]);
    assert_eq!(t.issuer, r.bound.id);
    assert!(matches!(
        next(&mut to_alice).await,
        Some(CallSignal::Ringing)
    ));
    assert!(matches!(
        next(&mut from_alice).await,
        Some(CallSignal::RelayGranted(g)) if g == granted
    ));
}

#[tokio::test]
async fn relay_grants_per_caller_are_capped() {
    let r = supernode(Limits {
        grants_per_key: Quota::new(1, 0),
        ..Limits::default()
    })
    .await;
    add_relay(&r);
    let (alice, bob) = (attach(&r).await.unwrap(), attach(&r).await.unwrap());
    let mut grants = Vec::new();
    for _ in 0..2 {
        let (_s, mut to_alice) = place(&alice, bob.id.peer_id(), vec![]).await;
        let (mut to_bob, mut from_alice) = bob.conn.accept_bi().await.unwrap();
        assert!(matches!(
            next(&mut from_alice).await,
            Some(CallSignal::Incoming { .. })
        ));
        send_frame(&mut to_bob, &CallSignal::Ringing).await.unwrap();
        match next(&mut to_alice).await {
            Some(CallSignal::RelayGranted(g)) => grants.push(g.len()),
            other => panic!("{other:?}"),
        }
        // The call itself still goes through, without a relay.
        assert!(matches!(
            next(&mut to_alice).await,
            Some(CallSignal::Ringing)
        ));
    }
    assert_eq!(grants, vec![1, 0]);
}

#[tokio::test]
async fn place_via_does_not_dial_addresses_the_caller_names() {
    let r = supernode(Limits::default()).await;
    let alice = attach(&r).await.unwrap();
    let trap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let victim = Contact {
        id: Identity::generate().peer_id(),
        addr: trap.local_addr().unwrap(),
    };
    let callee = Identity::generate().peer_id();
    let (_s, mut recv) = place(&alice, callee, vec![victim; 4]).await;
    assert!(matches!(
        next(&mut recv).await,
        Some(CallSignal::Unreachable(_))
    ));
    let mut buf = [0u8; 2048];
    let got = tokio::time::timeout(Duration::from_millis(500), trap.recv_from(&mut buf)).await;
    assert!(
        got.is_err(),
        "the supernode sent nothing to the named address"
    );
    // The trap could have received: a datagram from elsewhere arrives.
    let other = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    other.send_to(b"alive", victim.addr).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), trap.recv_from(&mut buf)).await;
    assert!(matches!(got, Ok(Ok((5, _)))));
}

#[tokio::test]
async fn placing_calls_is_rate_limited_per_caller() {
    let r = supernode(Limits {
        place_per_key: Quota::new(2, 0),
        ..Limits::default()
    })
    .await;
    let (alice, carol) = (attach(&r).await.unwrap(), attach(&r).await.unwrap());
    let nobody = Identity::generate().peer_id();
    let mut answers_seen = Vec::new();
    for _ in 0..3 {
        let (_s, mut recv) = place(&alice, nobody, vec![]).await;
        match next(&mut recv).await {
            Some(CallSignal::Unreachable(why)) => answers_seen.push(why.contains("too many")),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(answers_seen, vec![false, false, true]);
    // Another caller is not affected.
    let (_s, mut recv) = place(&carol, nobody, vec![]).await;
    assert!(matches!(
        next(&mut recv).await,
        Some(CallSignal::Unreachable(why)) if !why.contains("too many")
    ));
}

/// A relay (key `relay`) reports its load to `r`; returns the supernode's answer, or
/// why the supernode closed the connection.
async fn report_in(
    r: &Running,
    relay: &Identity,
) -> Result<SupernodeToRelay, quinn::ConnectionError> {
    let ep = make_endpoint("127.0.0.1:0".parse().unwrap(), relay, &[]).unwrap();
    let conn = match dial(
        &ep,
        relay,
        r.bound.quic,
        ALPN_RELAY_REPORT,
        Some(r.bound.id),
        Duration::from_secs(5),
    )
    .await
    {
        Ok((conn, _)) => conn,
        Err(NetError::Connection(e)) => return Err(e),
        Err(e) => panic!("dialing the supernode: {e}"),
    };
    let load = RelayLoad {
        relay: relay.peer_id(),
        listen: ep.local_addr().unwrap(),
        calls: 0,
        legs: 0,
        max_legs: 1000,
        tcp: None,
    };
    let report = RelayToSupernode::Report(load);
    match parley_net::request(&conn, &report, Duration::from_secs(5)).await {
        Ok(answer) => Ok(answer),
        Err(_) => Err(tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("the failed report's connection is closed")),
    }
}

#[tokio::test]
async fn a_relay_reporting_to_a_supernode_with_no_relay_configured_is_refused_and_never_granted() {
    let rogue = Identity::generate();
    // The control: a supernode configured with the relay's key takes its report.
    let configured =
        supernode_with(Limits::default(), RelayDirectory::new([rogue.peer_id()])).await;
    assert!(matches!(
        report_in(&configured, &rogue).await,
        Ok(SupernodeToRelay::Ack)
    ));
    // No --relay, no --relay-key: the same report is refused (the connection closed
    // with CLOSE_NOT_CONFIGURED), again and again.
    let r = supernode(Limits::default()).await;
    for _ in 0..3 {
        match report_in(&r, &rogue).await {
            Err(quinn::ConnectionError::ApplicationClosed(c)) => {
                assert_eq!(
                    c.error_code,
                    crate::relay_watch::CLOSE_NOT_CONFIGURED.into()
                )
            }
            other => panic!("a report to an unconfigured supernode got {other:?}"),
        }
    }
    assert!(!r.relays.admits(&rogue.peer_id()));
    assert!(r.relays.choose(driver::now(), 5).is_empty());
    // A call that rings gets no relay, and still goes through.
    let (alice, bob) = (attach(&r).await.unwrap(), attach(&r).await.unwrap());
    let (_s, mut to_alice) = place(&alice, bob.id.peer_id(), vec![]).await;
    let (mut to_bob, mut from_alice) = bob.conn.accept_bi().await.unwrap();
    assert!(matches!(
        next(&mut from_alice).await,
        Some(CallSignal::Incoming { relays, .. }) if relays.is_empty()
    ));
    send_frame(&mut to_bob, &CallSignal::Ringing).await.unwrap();
    assert!(matches!(
        next(&mut to_alice).await,
        Some(CallSignal::RelayGranted(g)) if g.is_empty()
    ));
    assert!(matches!(
        next(&mut to_alice).await,
        Some(CallSignal::Ringing)
    ));
}
