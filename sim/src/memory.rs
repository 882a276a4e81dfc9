//! Refusing a run that cannot fit in memory, before it builds any world: without this,
//! `--supernodes 100000000` allocates until the kernel's OOM killer ends it (or another
//! process on the machine).
//!
//! The estimate is linear in the two sizes, with costs measured on this simulator
//! (release build, k = 8, `--crash 20`, docs/performance.md "Session 12"): 10,000
//! supernodes / 100,000 clients peaked at 1,786 MiB and 10,000 / 1,000,000 at
//! 5,586 MiB, so a client costs about 4.3 KiB and a supernode about 140 KiB. `--churn`
//! peaks about 45 % higher (8,096 MiB at a million clients, session 10), so a run is
//! refused only when even the crash run's estimate exceeds what is available.

/// Peak memory of a run with `supernodes` and `clients`, in MiB (see the module docs).
pub fn estimate_mib(supernodes: u64, clients: u64) -> u64 {
    const SUPERNODE_KIB: u64 = 140;
    const CLIENT_KIB: u64 = 43; // 4.3 KiB, in tenths below
    let kib_x10 = supernodes
        .saturating_mul(SUPERNODE_KIB * 10)
        .saturating_add(clients.saturating_mul(CLIENT_KIB));
    kib_x10 / 10 / 1024
}

/// Memory available to a new process now, in MiB (Linux `MemAvailable`), or `None` if
/// it cannot be read (then nothing is refused).
pub fn available_mib() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib / 1024)
}

/// An error naming the sizes, the estimate and what is available, when the estimate
/// exceeds `available_mib`; `Ok` otherwise.
pub fn check_fits(supernodes: u64, clients: u64, available_mib: Option<u64>) -> anyhow::Result<()> {
    let need = estimate_mib(supernodes, clients);
    match available_mib {
        Some(have) if need > have => anyhow::bail!(
            "--supernodes {supernodes} --clients {clients} needs about {} GiB of memory \
             (about 140 KiB a supernode and 4.3 KiB a client) and {} GiB is available",
            gib(need),
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
