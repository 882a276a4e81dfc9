//! The per-step table and the `RESULT` line of `supernode-bench`.

use std::fmt::Write as _;
use std::time::Duration;

/// One ramp step's figures.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// Clients this step aimed for.
    pub target: usize,
    /// Clients attached (connected, record published) after it.
    pub clients: usize,
    /// Loopback source addresses (quinn endpoints) they used.
    pub addresses: usize,
    /// Time this step's attachments took, s.
    pub attach_s: f64,
    /// This step's attachments per second.
    pub attach_per_s: f64,
    /// The supernode's CPU while this step attached, % of one core.
    pub attach_cpu_pct: f64,
    /// This benchmark's CPU while this step attached, % of one core.
    pub bench_attach_cpu_pct: f64,
    /// This step's failed attach attempts.
    pub failed: usize,
    /// The supernode's resident memory after the idle window, KiB.
    pub rss_kib: u64,
    /// (RSS − RSS before any client) / clients, KiB.
    pub rss_per_client_kib: f64,
    /// The supernode's CPU over the idle window, % of one core.
    pub idle_cpu_pct: f64,
    /// Lookups answered with the record per second, at saturation.
    pub lookups_per_s: f64,
    /// Lookups that failed in the window.
    pub lookups_failed: u64,
    /// The supernode's CPU while answering them, % of one core.
    pub lookup_cpu_pct: f64,
    /// This benchmark's CPU while generating the lookups, % of one core.
    pub bench_lookup_cpu_pct: f64,
    /// UDP datagrams the host dropped (receive buffers full) during the step.
    pub udp_drops: u64,
    /// This benchmark process's resident memory (the clients' side), KiB.
    pub bench_rss_kib: u64,
    /// Attaches and lookups within the failure threshold, nothing stopped it early.
    pub passed: bool,
}

impl Step {
    /// The supernode's CPU per answered lookup, µs.
    pub fn us_per_lookup(&self) -> f64 {
        if self.lookups_per_s <= 0.0 {
            return 0.0;
        }
        self.lookup_cpu_pct / 100.0 * 1e6 / self.lookups_per_s
    }
}

/// A whole run.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// The supernode's resident memory before any client, KiB.
    pub baseline_rss_kib: u64,
    /// The ramp's steps, in order.
    pub steps: Vec<Step>,
    /// Why the ramp ended.
    pub stop: String,
    /// Wall time of the run.
    pub wall: Duration,
}

impl Outcome {
    /// The last step that passed: the figures the `RESULT` line reports.
    pub fn best(&self) -> Option<&Step> {
        self.steps.iter().rev().find(|s| s.passed)
    }

    /// The per-step table (Markdown), the stop reason and the `RESULT` line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "supernode RSS before any client: {:.1} MiB\n",
            self.baseline_rss_kib as f64 / 1024.0
        );
        out.push_str(
            "| clients | addresses | attach s | attaches/s | failed | CPU % SN / bench (attach) | SN RSS MiB | KiB/client | idle CPU % | lookups/s | CPU % SN / bench (lookups) | SN µs/lookup | bench RSS MiB | UDP drops | pass |\n",
        );
        out.push_str(
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|\n",
        );
        for s in &self.steps {
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {:.0} | {} | {:.0} / {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} / {:.0} | {:.1} | {:.0} | {} | {} |",
                s.clients,
                s.addresses,
                s.attach_s,
                s.attach_per_s,
                s.failed,
                s.attach_cpu_pct,
                s.bench_attach_cpu_pct,
                s.rss_kib as f64 / 1024.0,
                s.rss_per_client_kib,
                s.idle_cpu_pct,
                s.lookups_per_s,
                s.lookup_cpu_pct,
                s.bench_lookup_cpu_pct,
                s.us_per_lookup(),
                s.bench_rss_kib as f64 / 1024.0,
                s.udp_drops,
                if s.passed { "yes" } else { "no" }
            );
        }
        let _ = writeln!(
            out,
            "\nramp ended: {} ({:.0} s)",
            self.stop,
            self.wall.as_secs_f64()
        );
        out.push_str(&self.result_line());
        out.push('\n');
        out
    }

    /// `RESULT clients=N rss_per_client_kib=K idle_cpu_pct=C lookups_per_s=L`, from the
    /// last passing step (all zero if none passed).
    pub fn result_line(&self) -> String {
        let best = self.best().cloned().unwrap_or_default();
        format!(
            "RESULT clients={} rss_per_client_kib={:.1} idle_cpu_pct={:.1} lookups_per_s={:.0}",
            best.clients, best.rss_per_client_kib, best.idle_cpu_pct, best.lookups_per_s
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_reports_the_last_passing_step() {
        let ok = Step {
            clients: 5_000,
            rss_per_client_kib: 12.34,
            idle_cpu_pct: 3.21,
            lookups_per_s: 20_000.4,
            lookup_cpu_pct: 100.0,
            passed: true,
            ..Step::default()
        };
        let bad = Step {
            clients: 9_000,
            passed: false,
            ..ok.clone()
        };
        let outcome = Outcome {
            steps: vec![ok, bad],
            stop: "step 10000 failed".into(),
            ..Outcome::default()
        };
        let text = outcome.render();
        assert_eq!(
            text.lines().last(),
            Some(
                "RESULT clients=5000 rss_per_client_kib=12.3 idle_cpu_pct=3.2 lookups_per_s=20000"
            )
        );
        assert!((outcome.steps[0].us_per_lookup() - 50.0).abs() < 1e-2);
        assert_eq!(
            Outcome::default().result_line(),
            "RESULT clients=0 rss_per_client_kib=0.0 idle_cpu_pct=0.0 lookups_per_s=0"
        );
    }
}
