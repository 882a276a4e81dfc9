//! Which relay a call uses: the seed's CDN idea ("enter deep": the closest of many small
//! relays), scored by RTT to both parties and by load.
//!
//! Two stages, because coordinates are estimates and come partly from strangers:
//! 1. [`shortlist`]: rank every candidate by the RTT its coordinate predicts for the
//!    relayed path, caller → relay → callee (`estimate(a, r) + estimate(r, b)`, Vivaldi,
//!    see [`crate::vivaldi`]), inflated by its load, and keep the best few. Relays at or
//!    above [`FULL_LOAD`] are left out.
//! 2. [`choose`]: both parties ping the short-listed relays (the relay pairing's probes)
//!    and the relay with the smallest *measured* path RTT, again inflated by load, wins.
//!    A relay that lied about its coordinate at most wins a place on the short list.
//!
//! Load is the relay's reported share of its capacity, 0.0–1.0 (its `--relay-kbps` cap
//! for a peer relay); an idle relay's score is its RTT, a half-full one's 1.5× it.

use crate::vivaldi::Coordinate;

/// Relays reporting this share of their capacity or more are not chosen.
pub const FULL_LOAD: f64 = 0.9;

/// How many relays both parties ping (stage 2).
pub const SHORTLIST: usize = 3;

/// One relay a call could use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RelayCandidate<Id> {
    /// Which relay.
    pub id: Id,
    /// Its Vivaldi coordinate.
    pub coord: Coordinate,
    /// Its reported load, 0.0–1.0 (values out of range count as full).
    pub load: f64,
}

fn usable(load: f64) -> Option<f64> {
    (load.is_finite() && (0.0..FULL_LOAD).contains(&load)).then_some(load)
}

/// `rtt_ms` inflated by `load`: what a relay's path costs for ranking.
fn score(rtt_ms: f64, load: f64) -> f64 {
    rtt_ms * (1.0 + load)
}

/// Up to `n` usable candidates, best predicted relayed path for callers at `a` and `b`
/// first (stage 1).
pub fn shortlist<Id: Copy>(
    candidates: &[RelayCandidate<Id>],
    a: &Coordinate,
    b: &Coordinate,
    n: usize,
) -> Vec<RelayCandidate<Id>> {
    let mut ranked: Vec<(f64, RelayCandidate<Id>)> = candidates
        .iter()
        .filter_map(|c| {
            let load = usable(c.load)?;
            let rtt = a.estimate_ms(&c.coord) + c.coord.estimate_ms(b);
            Some((score(rtt, load), *c))
        })
        .collect();
    ranked.sort_by(|x, y| x.0.total_cmp(&y.0));
    ranked.into_iter().take(n).map(|(_, c)| c).collect()
}

/// The relay to use among `measured` = (candidate, caller's RTT to it in ms, callee's
/// RTT to it in ms), stage 2: the smallest measured path RTT inflated by load. `None`
/// when no candidate was measured by both parties or all are full.
pub fn choose<Id: Copy>(measured: &[(RelayCandidate<Id>, f64, f64)]) -> Option<Id> {
    measured
        .iter()
        .filter(|(_, a, b)| a.is_finite() && b.is_finite() && *a >= 0.0 && *b >= 0.0)
        .filter_map(|(c, a, b)| Some((score(a + b, usable(c.load)?), c.id)))
        .min_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f64, load: f64, id: u32) -> RelayCandidate<u32> {
        RelayCandidate {
            id,
            coord: Coordinate {
                pos: [x, 0.0],
                height: 1.0,
                error: 0.2,
            },
            load,
        }
    }

    fn coord(x: f64) -> Coordinate {
        at(x, 0.0, 0).coord
    }

    #[test]
    fn the_relay_between_the_parties_ranks_first_and_full_relays_not_at_all() {
        let relays = [
            at(500.0, 0.0, 1),
            at(50.0, 0.0, 2),
            at(55.0, 0.95, 3),
            at(-300.0, 0.0, 4),
        ];
        let list = shortlist(&relays, &coord(0.0), &coord(100.0), 3);
        let ids: Vec<u32> = list.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![2, 4, 1]);
    }

    #[test]
    fn load_outweighs_a_few_milliseconds_but_not_a_continent() {
        let (a, b) = (coord(0.0), coord(100.0));
        let busy_near = at(50.0, 0.8, 1);
        let idle_near = at(60.0, 0.0, 2);
        let idle_far = at(400.0, 0.0, 3);
        let list = shortlist(&[busy_near, idle_near, idle_far], &a, &b, 3);
        assert_eq!(list[0].id, 2, "idle and nearly as close");
        assert_eq!(list[1].id, 1, "busy but close beats idle and far");
    }

    #[test]
    fn measured_rtts_decide_over_coordinates() {
        // Relay 1's coordinate claims it sits between the parties; the pings say not.
        let liar = at(50.0, 0.0, 1);
        let honest = at(80.0, 0.0, 2);
        let pick = choose(&[(liar, 180.0, 190.0), (honest, 60.0, 70.0)]);
        assert_eq!(pick, Some(2));
        assert_eq!(choose(&[(liar, f64::NAN, 10.0)]), None);
        assert_eq!(choose(&[(at(0.0, 1.0, 3), 1.0, 1.0)]), None);
        assert_eq!(choose::<u32>(&[]), None);
    }
}
