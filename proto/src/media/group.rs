//! A hosted conference's member list as the host shares it with every participant, and
//! the **group safety code** over it (issue 16).
//!
//! Each participant holds an ordinary end-to-end encrypted call with the host, checked by
//! its pairwise safety code; the host alone knows who else is in. So that a host cannot
//! show different people different conferences (or let someone listen in unseen), it
//! sends each participant the member list inside their encrypted call
//! ([`MediaFrame::Roster`]), and everyone shows a code over that list: people who read
//! out the same group code are in the same conference, with the same members. The code
//! is SHA-256 over `"parley-group-code-v1\0"` and the members' 32-byte keys in ascending
//! order, shown as 12 digits like the pairwise code (the idea of Signal's safety numbers
//! and of SFrame deployments' group epochs; the format is ours).
//!
//! Datagrams may be lost, so the host repeats the current list with every receiver
//! report (about once a second) and numbers each change (`epoch`): a participant shows
//! a list once per epoch and ignores older epochs arriving late.

use crate::call::e2e::code_digits;
use crate::call::media::MediaFrame;
use crate::PeerId;
use sha2::{Digest, Sha256};

const CODE_DOMAIN: &[u8] = b"parley-group-code-v1\0";

/// Most members a roster may name, the host included (the conference's limit).
pub const MAX_MEMBERS: usize = super::mix_roster::MAX_PEOPLE;

/// The group safety code of `members` (any order, the host included): 12 digits in
/// three groups of four, e.g. `"0412 9931 5520"`.
pub fn group_safety_code(members: &[PeerId]) -> String {
    let mut keys: Vec<[u8; 32]> = members.iter().map(PeerId::to_bytes).collect();
    keys.sort_unstable();
    keys.dedup();
    let mut h = Sha256::new();
    h.update(CODE_DOMAIN);
    for k in &keys {
        h.update(k);
    }
    code_digits(&h.finalize())
}

/// One side's roster state inside a [`MediaSession`](super::MediaSession): what a host
/// sends, and what a participant last showed.
#[derive(Debug, Default)]
pub struct RosterSync {
    /// Host side: the current list and its epoch (1 for the first list).
    sending: Option<(u32, Vec<PeerId>)>,
    /// Participant side: the newest epoch shown.
    shown: Option<u32>,
}

impl RosterSync {
    /// Host: the members are now `members` (at most [`MAX_MEMBERS`]; more are cut).
    /// Returns the frame to send at once; [`RosterSync::repeat`] sends it again later.
    pub fn set(&mut self, members: Vec<PeerId>) -> MediaFrame {
        let epoch = self.sending.as_ref().map_or(1, |(e, _)| e.wrapping_add(1));
        let mut members = members;
        members.truncate(MAX_MEMBERS);
        self.sending = Some((epoch, members));
        self.repeat().expect("just set")
    }

    /// Host: the current list again (None when this side never set one).
    pub fn repeat(&self) -> Option<MediaFrame> {
        self.sending
            .as_ref()
            .map(|(epoch, members)| MediaFrame::Roster {
                epoch: *epoch,
                members: members.clone(),
            })
    }

    /// Participant: a received list; returns it when it is newer than the last shown.
    pub fn receive(&mut self, epoch: u32, members: Vec<PeerId>) -> Option<Vec<PeerId>> {
        if self.shown.is_some_and(|shown| epoch <= shown) {
            return None;
        }
        self.shown = Some(epoch);
        Some(members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;

    fn ids(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| Identity::generate().peer_id()).collect()
    }

    #[test]
    fn the_code_ignores_order_and_changes_with_membership() {
        let m = ids(4);
        let code = group_safety_code(&m);
        assert_eq!(code.len(), 14);
        assert_eq!(code.split(' ').count(), 3);
        let mut reversed = m.clone();
        reversed.reverse();
        assert_eq!(group_safety_code(&reversed), code);
        assert_ne!(group_safety_code(&m[..3]), code, "one member fewer");
        let mut other = m.clone();
        other[3] = ids(1)[0];
        assert_ne!(group_safety_code(&other), code, "someone else in");
    }

    #[test]
    fn a_participant_shows_each_epoch_once_and_ignores_older_ones() {
        let (mut host, mut guest) = (RosterSync::default(), RosterSync::default());
        assert_eq!(host.repeat(), None);
        let m = ids(3);
        let MediaFrame::Roster { epoch: e1, members } = host.set(m[..2].to_vec()) else {
            panic!("a roster")
        };
        let MediaFrame::Roster { epoch: e2, .. } = host.set(m.clone()) else {
            panic!("a roster")
        };
        assert_eq!((e1, e2), (1, 2));
        assert_eq!(guest.receive(e2, m.clone()), Some(m.clone()));
        assert_eq!(guest.receive(e2, m.clone()), None, "a repeat");
        assert_eq!(guest.receive(e1, members), None, "late and older");
        assert!(host.repeat().is_some());
    }
}
