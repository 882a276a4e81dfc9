//! Refusing a run that cannot fit in memory, before it builds any world: without this,
//! `--supernodes 100000000` allocates until the kernel's OOM killer ends it (or another
//! process on the machine).
//!
//! The estimate is linear in the two sizes, with costs measured on this simulator
//! (release build, k = 8, `--crash 20`, docs/performance.md "Session 12"): 10,000
//! supernodes / 100,000 clients peaked at 1,786 MiB and 10,000 / 1,000,000 at
//! 5,586 MiB, so a client costs about 4.3 KiB and a supernode about 140 KiB. `--churn`
//! peaks about 55 % higher (8,649 MiB at a million clients, same session), so a run is
//! refused only when even the crash run's estimate exceeds what is available.

/// A supernode's share of the peak, in tenths of a KiB (140 KiB).
const SUPERNODE_DECI_KIB: u64 = 1_400;
/// A client's share of the peak, in tenths of a KiB (4.3 KiB).
const CLIENT_DECI_KIB: u64 = 43;

/// Peak memory of a run with `supernodes` and `clients`, in MiB (see the module docs);
/// saturates instead of overflowing.
pub fn estimate_mib(supernodes: u64, clients: u64) -> u64 {
    let deci_kib = supernodes
        .saturating_mul(SUPERNODE_DECI_KIB)
        .saturating_add(clients.saturating_mul(CLIENT_DECI_KIB));
    deci_kib / 10 / 1024
}

/// An error naming the sizes, the estimate and what is available, when the estimate
/// exceeds `available_mib` (MiB, e.g. from
/// [`crate::capacity::process::mem_available_mib`]; `None`: nothing is refused);
/// `Ok` otherwise.
pub fn check_fits(supernodes: u64, clients: u64, available_mib: Option<u64>) -> anyhow::Result<()> {
    let need = estimate_mib(supernodes, clients);
    match available_mib {
        Some(have) if need > have => anyhow::bail!(
            "--supernodes {supernodes} --clients {clients} needs about {} GiB of memory \
             (about {} KiB a supernode and {} KiB a client) and {} GiB is available",
            gib(need),
            SUPERNODE_DECI_KIB as f64 / 10.0,
            CLIENT_DECI_KIB as f64 / 10.0,
            gib(have)
        ),
        _ => Ok(()),
    }
}

fn gib(mib: u64) -> String {
    format!("{:.1}", mib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_matches_the_measured_runs_it_comes_from() {
        // Within 5 % of the peaks it was fitted to.
        for (s, c, measured) in [(10_000, 100_000, 1_786), (10_000, 1_000_000, 5_586)] {
            let e = estimate_mib(s, c) as f64;
            assert!(
                (e / measured as f64 - 1.0).abs() < 0.05,
                "{s}/{c}: {e} vs {measured}"
            );
        }
    }

    #[test]
    fn a_run_larger_than_memory_is_refused_and_a_fitting_one_is_not() {
        let err = check_fits(100_000_000, 5, Some(16_000))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs about 13351.4 GiB"), "{err}");
        assert!(err.contains("15.6 GiB is available"), "{err}");
        assert!(check_fits(10_000, 1_000_000, Some(16_000)).is_ok());
        assert!(
            check_fits(100_000_000, 5, None).is_ok(),
            "unknown: not refused"
        );
        // Sizes near the type's end saturate rather than overflow.
        assert!(check_fits(u64::MAX, u64::MAX, Some(16_000)).is_err());
    }
}
