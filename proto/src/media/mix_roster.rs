//! Who is in a hosted conference (issue 16), as the host decides it: whom it may call in,
//! who joined, and when the conference is over. Sans-IO: the shell reports what its
//! calls did and follows the answers (see `client/src/conference/`). The host itself is
//! [`HOST`] on the mixing bus; participants get the following [`MemberId`]s, never
//! reused.

use super::mix::MemberId;
use crate::PeerId;
use std::collections::BTreeMap;
use thiserror::Error;

/// Most people in one conference, the host included (issue 16: three to eight).
pub const MAX_PEOPLE: usize = 8;

/// The host's own member of the bus.
pub const HOST: MemberId = MemberId(0);

/// Why someone cannot be called in.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    /// The host named itself.
    #[error("that is your own id: you host the conference")]
    Yourself,
    /// They are being called, or are in it, already.
    #[error("they are already in the conference")]
    AlreadyIn,
    /// [`MAX_PEOPLE`] are in it or being called.
    #[error("a conference holds at most {0} people")]
    Full(usize),
}

/// Why the conference ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The host hung up (or its input ended): everyone's call ends.
    HostLeft,
    /// Everyone who joined has left.
    EveryoneLeft,
    /// Nobody invited ever joined.
    NobodyAnswered,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ended::HostLeft => "local hang-up",
            Ended::EveryoneLeft => "everyone left",
            Ended::NobodyAnswered => "nobody answered",
        })
    }
}

/// Where one participant is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seat {
    /// Being called (looked up, ringing).
    Calling,
    /// Answered: on the bus.
    Joined,
}

/// The conference's members as the host sees them.
#[derive(Debug)]
pub struct Roster {
    host: PeerId,
    max_people: usize,
    seats: BTreeMap<MemberId, (PeerId, Seat)>,
    next: u32,
    ever_joined: usize,
    ended: Option<Ended>,
}

impl Roster {
    /// An empty conference hosted by `host`, for at most `max_people` people (the host
    /// included; [`MAX_PEOPLE`] normally).
    pub fn new(host: PeerId, max_people: usize) -> Roster {
        Roster {
            host,
            max_people,
            seats: BTreeMap::new(),
            next: HOST.0,
            ever_joined: 0,
            ended: None,
        }
    }

    /// Whether `peer` may be called in; the member id their call gets if so.
    pub fn invite(&mut self, peer: PeerId) -> Result<MemberId, Refusal> {
        if peer == self.host {
            return Err(Refusal::Yourself);
        }
        if self.seats.values().any(|(p, _)| *p == peer) {
            return Err(Refusal::AlreadyIn);
        }
        if self.ended.is_some() || 1 + self.seats.len() >= self.max_people {
            return Err(Refusal::Full(self.max_people));
        }
        self.next += 1;
        let id = MemberId(self.next);
        self.seats.insert(id, (peer, Seat::Calling));
        Ok(id)
    }

    /// Their call connected.
    pub fn joined(&mut self, id: MemberId) {
        if let Some(seat) = self.seats.get_mut(&id) {
            if seat.1 == Seat::Calling {
                seat.1 = Seat::Joined;
                self.ever_joined += 1;
            }
        }
    }

    /// Their call ended (or never connected). Returns why the conference is over when
    /// it now is: nobody left in it, nobody being called.
    pub fn left(&mut self, id: MemberId) -> Option<Ended> {
        self.seats.remove(&id);
        if self.ended.is_none() && self.seats.is_empty() {
            self.ended = Some(if self.ever_joined > 0 {
                Ended::EveryoneLeft
            } else {
                Ended::NobodyAnswered
            });
        }
        self.ended
    }

    /// The host leaves: the conference is over (every remaining call is to be hung up).
    pub fn host_left(&mut self) -> Ended {
        *self.ended.get_or_insert(Ended::HostLeft)
    }

    /// Why it ended, once it has.
    pub fn ended(&self) -> Option<Ended> {
        self.ended
    }

    /// How many ever joined.
    pub fn ever_joined(&self) -> usize {
        self.ever_joined
    }

    /// The members now (being called or joined), in order.
    pub fn seats(&self) -> Vec<(MemberId, PeerId, Seat)> {
        self.seats
            .iter()
            .map(|(id, (p, s))| (*id, *p, *s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn peer() -> PeerId {
        Identity::generate().peer_id()
    }

    #[test]
    fn invitations_are_refused_for_the_host_twice_the_same_and_past_the_limit() {
        let host = peer();
        let mut r = Roster::new(host, MAX_PEOPLE);
        assert_eq!(r.invite(host), Err(Refusal::Yourself));
        let bob = peer();
        let id = r.invite(bob).unwrap();
        assert_ne!(id, HOST);
        assert_eq!(r.invite(bob), Err(Refusal::AlreadyIn));
        r.joined(id);
        assert_eq!(r.invite(bob), Err(Refusal::AlreadyIn));
        for _ in 0..MAX_PEOPLE - 2 {
            r.invite(peer()).unwrap();
        }
        assert_eq!(r.seats().len(), MAX_PEOPLE - 1);
        assert_eq!(r.invite(peer()), Err(Refusal::Full(MAX_PEOPLE)));
        // A seat that frees up can be taken again; ids are never reused.
        r.left(id);
        let again = r.invite(bob).unwrap();
        assert!(again.0 > MAX_PEOPLE as u32 - 1);
    }

    #[test]
    fn it_ends_when_the_last_one_leaves_and_says_whether_anyone_joined() {
        let mut r = Roster::new(peer(), MAX_PEOPLE);
        let (a, b) = (r.invite(peer()).unwrap(), r.invite(peer()).unwrap());
        r.joined(a);
        r.joined(a);
        assert_eq!(r.ever_joined(), 1);
        assert_eq!(r.left(a), None, "b is still being called");
        assert_eq!(r.left(b), Some(Ended::EveryoneLeft));
        // Over is over: nobody can be called into it any more.
        assert_eq!(r.invite(peer()), Err(Refusal::Full(MAX_PEOPLE)));

        let mut r = Roster::new(peer(), MAX_PEOPLE);
        let (a, b) = (r.invite(peer()).unwrap(), r.invite(peer()).unwrap());
        r.left(a);
        assert_eq!(r.left(b), Some(Ended::NobodyAnswered));
    }

    #[test]
    fn the_host_leaving_ends_it_whatever_comes_after() {
        let mut r = Roster::new(peer(), MAX_PEOPLE);
        let a = r.invite(peer()).unwrap();
        r.joined(a);
        assert_eq!(r.host_left(), Ended::HostLeft);
        assert_eq!(r.left(a), Some(Ended::HostLeft));
        assert_eq!(r.ended(), Some(Ended::HostLeft));
        assert_eq!(Ended::HostLeft.to_string(), "local hang-up");
    }
}
