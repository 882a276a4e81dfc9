//! `parley online`: stay reachable, and answer calls.

use crate::call::answer::{refuse_busy, Answerer};
use crate::call::CallOptions;
use crate::output::Printer;
use crate::session::ClientSession;
use anyhow::Result;
use parley_proto::PeerId;
use quinn::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type DirectRoute = Arc<Mutex<Option<mpsc::Sender<(PeerId, Connection)>>>>;

pub async fn run(
    mut session: ClientSession,
    opts: CallOptions,
    auto_answer: bool,
    out: Printer,
) -> Result<()> {
    let (identity, endpoint) = (session.identity.clone(), session.endpoint.clone());
    let answerer = Arc::new(Answerer {
        identity,
        endpoint,
        opts,
        auto_answer,
        out,
        over_tcp: session.over_tcp,
    });
    let in_call = Arc::new(AtomicBool::new(false));
    let route: DirectRoute = Arc::default();
    let mut calls: u32 = 0;
    let mut stop = std::pin::pin!(parley_net::shutdown_signal());
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some((peer, conn)) = session.direct.recv() => {
                let tx = route.lock().unwrap_or_else(|p| p.into_inner()).clone();
                match tx {
                    Some(tx) => { let _ = tx.send((peer, conn)).await; }
                    None => conn.close(1u32.into(), b"not in a call"),
                }
            }
            Some(call) = session.incoming.recv() => {
                if in_call.swap(true, Ordering::SeqCst) {
                    tokio::spawn(refuse_busy(session.identity.clone(), call));
                    continue;
                }
                calls += 1;
                let (tx, rx) = mpsc::channel(4);
                *route.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
                let (answerer, in_call, route, candidates) = (answerer.clone(), in_call.clone(), route.clone(), session.candidates());
                let n = calls;
                tokio::spawn(async move {
                    if let Err(e) = answerer.handle(call, n, candidates, rx).await {
                        eprintln!("error: call failed: {e:#}");
                    }
                    *route.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    in_call.store(false, Ordering::SeqCst);
                });
            }
        }
    }
    session.stop().await;
    Ok(())
}
