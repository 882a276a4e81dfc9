//! `overlay-sim` refuses inputs that would measure nothing or ignore a flag, with a
//! message and a non-zero exit, before it builds any world.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    // A small world unless the case sets its size itself.
    let mut all: Vec<&str> = Vec::new();
    for (flag, value) in [("--supernodes", "20"), ("--clients", "50")] {
        if !args.contains(&flag) {
            all.extend([flag, value]);
        }
    }
    all.extend(args);
    let out = Command::new(env!("CARGO_BIN_EXE_overlay-sim"))
        .args(all)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("overlay-sim runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn runs_without_an_honest_supernode_or_with_ignored_flags_are_refused() {
    for (args, says) in [
        (&["--sybil", "100"][..], "no honest supernode"),
        (
            &["--malicious", "50", "--sybil", "50"][..],
            "no honest supernode",
        ),
        (&["--churn", "--crash", "20"][..], "not with --crash"),
        (
            &["--peers", "80", "--crash", "20"][..],
            "not with --churn or --crash",
        ),
        (&["--sybil", "150"][..], "not a percentage"),
        (
            &["--crash", "100"][..],
            "no supernode is left to look anybody up from",
        ),
        (&["--supernodes", "0"][..], "0 is less than 2"),
        (&["--clients", "0"][..], "0 is less than 1"),
        (&["--k", "0"][..], "0 is less than 1"),
        (&["--paths", "0"][..], "0 is less than 1"),
        (&["--paths", "9"][..], "more than 8 paths"),
        (&["--bootstraps", "0"][..], "0 is less than 1"),
        (
            &["--supernodes", "100000000", "--clients", "5"][..],
            "GiB is available",
        ),
        (
            &["--supernodes", "18446744073709551615", "--clients", "5"][..],
            "GiB is available",
        ),
        (
            &["--supernodes", "10", "--crash", "96"][..],
            "crashes all of them",
        ),
        (&["--loss", "100"][..], "loses every message"),
        (&["--k", "1000000000"][..], "is more than 64"),
        (&["--alpha", "65"][..], "is more than 64"),
    ] {
        let (code, stderr) = run(args);
        assert!(code.is_some_and(|c| c != 0), "{args:?} exited {code:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
