//! Path choice of a call's media: which of the live paths (a direct connection, relay
//! legs) carries the audio. Part of [`super::session::MediaSession`]; sans-IO.
//!
//! Every path is probed a few times a second (the peer answers on the path the probe came
//! in on; the peer's audio arriving on a path counts as an answer too). The preferred
//! path — direct first, then the relays in the order granted — that answered within
//! `dead_after` carries the call. A new path takes over only once it has answered (make
//! before break); a path that stops answering (a relay killed, a NAT mapping gone) is
//! left within `dead_after` for the next one that still answers.

use crate::time::Timestamp;
use std::time::Duration;

/// Which path a datagram takes. Ordered by preference: direct first, then relay 0, 1, ….
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathKind {
    /// Straight to the peer.
    Direct,
    /// Through the n-th granted relay (0: primary).
    Relay(u8),
}

impl PathKind {
    /// The path's kind for people and JSON: "direct" or "relay".
    pub fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Relay(_) => "relay",
        }
    }
}

#[derive(Debug)]
struct Path {
    kind: PathKind,
    up: bool,
    answered: Option<Timestamp>,
}

/// The paths of one call and when each last proved it works both ways.
#[derive(Debug, Default)]
pub struct PathSet {
    paths: Vec<Path>,
    /// Paths still being set up (a path leaves once it is up or has failed).
    pending: Vec<PathKind>,
    failures: Vec<(PathKind, String)>,
}

impl PathSet {
    /// Paths the shell is trying to bring up; when all have failed and none is up, the
    /// call has no media path.
    pub fn expect(&mut self, kinds: &[PathKind]) {
        self.pending = kinds.to_vec();
    }

    /// A path came up (or came back).
    pub fn up(&mut self, kind: PathKind) {
        self.pending.retain(|k| *k != kind);
        match self.paths.iter_mut().find(|p| p.kind == kind) {
            Some(p) => {
                p.up = true;
                p.answered = None;
            }
            None => self.paths.push(Path {
                kind,
                up: true,
                answered: None,
            }),
        }
        self.paths.sort_by_key(|p| p.kind);
    }

    /// A path went down (its connection closed).
    pub fn down(&mut self, kind: PathKind) {
        if let Some(p) = self.paths.iter_mut().find(|p| p.kind == kind) {
            p.up = false;
            p.answered = None;
        }
    }

    /// A path could not be set up.
    pub fn failed(&mut self, kind: PathKind, why: String) {
        self.pending.retain(|k| *k != kind);
        self.failures.push((kind, why));
    }

    /// Why paths failed so far, as "kind: reason".
    pub fn failures(&self) -> Vec<String> {
        self.failures
            .iter()
            .map(|(k, why)| format!("{} path: {why}", k.name()))
            .collect()
    }

    /// True when nothing is up and nothing more is coming.
    pub fn exhausted(&self) -> bool {
        self.pending.is_empty() && !self.paths.iter().any(|p| p.up)
    }

    /// A probe came back on `kind` at `now`.
    pub fn answered(&mut self, kind: PathKind, now: Timestamp) {
        if let Some(p) = self.paths.iter_mut().find(|p| p.kind == kind && p.up) {
            p.answered = Some(now);
        }
    }

    /// The paths that are up, preferred first.
    pub fn open(&self) -> impl Iterator<Item = PathKind> + '_ {
        self.paths.iter().filter(|p| p.up).map(|p| p.kind)
    }

    /// The path sends use at `now`: the preferred one that answered within `dead_after`;
    /// if none did, the one that answered last; before any has answered, the preferred
    /// open one. `None` only when no path is up.
    pub fn current(&self, now: Timestamp, dead_after: Duration) -> Option<PathKind> {
        let fresh = |p: &Path| p.answered.is_some_and(|t| now.since(t) < dead_after);
        let live = self.paths.iter().filter(|p| p.up);
        if let Some(p) = live.clone().find(|p| fresh(p)) {
            return Some(p.kind);
        }
        // None answered lately (a lossy stretch can eat a few probes in a row): keep
        // sending on the one that answered last, else the preferred one. Sending on a
        // path that may be dead costs nothing; the engine's peer timeout ends the call
        // if they all are.
        let last = live
            .clone()
            .filter(|p| p.answered.is_some())
            .max_by_key(|p| p.answered);
        last.or_else(|| live.clone().next()).map(|p| p.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEAD: Duration = Duration::from_millis(500);

    #[test]
    fn prefers_direct_once_it_answers_and_falls_back_when_it_goes_quiet() {
        let mut s = PathSet::default();
        s.expect(&[PathKind::Direct, PathKind::Relay(0)]);
        s.up(PathKind::Relay(0));
        assert_eq!(s.current(Timestamp(0), DEAD), Some(PathKind::Relay(0)));
        s.answered(PathKind::Relay(0), Timestamp(10));
        s.up(PathKind::Direct);
        // Direct is up but has not answered: make before break.
        assert_eq!(s.current(Timestamp(20), DEAD), Some(PathKind::Relay(0)));
        s.answered(PathKind::Direct, Timestamp(30));
        assert_eq!(s.current(Timestamp(40), DEAD), Some(PathKind::Direct));
        s.answered(PathKind::Relay(0), Timestamp(600));
        assert_eq!(s.current(Timestamp(600), DEAD), Some(PathKind::Relay(0)));
        // All quiet: stay on the one that answered last.
        assert_eq!(s.current(Timestamp(1200), DEAD), Some(PathKind::Relay(0)));
        s.down(PathKind::Relay(0));
        assert_eq!(s.current(Timestamp(1200), DEAD), Some(PathKind::Direct));
        s.down(PathKind::Direct);
        assert_eq!(s.current(Timestamp(1200), DEAD), None);
        assert!(s.exhausted(), "nothing pending, nothing up");
    }

    #[test]
    fn exhausted_when_every_expected_path_failed() {
        let mut s = PathSet::default();
        s.expect(&[PathKind::Relay(0)]);
        assert!(!s.exhausted());
        s.failed(PathKind::Relay(0), "refused".into());
        assert!(s.exhausted());
        assert_eq!(s.failures(), vec!["relay path: refused".to_string()]);
        s.up(PathKind::Direct);
        assert!(!s.exhausted());
        s.down(PathKind::Direct);
        assert!(s.exhausted());
    }
}
