//! `wav-similarity SENT.wav HEARD.wav`: how faithfully a call carried audio.
//!
//! Aligns the heard recording to the sent one (the lag that maximises their
//! cross-correlation, up to 2 s) and prints one JSON line with the lag and the Pearson
//! correlation of the aligned parts. Used by the demo's report; tests use the same
//! function through `parley_e2e::similarity`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [sent, heard] = args.as_slice() else {
        eprintln!("usage: wav-similarity SENT.wav HEARD.wav");
        std::process::exit(2);
    };
    match parley_e2e::similarity(sent.as_ref(), heard.as_ref()) {
        Ok(s) => println!(
            "{{\"correlation\":{:.4},\"lag_ms\":{:.1}}}",
            s.correlation,
            s.lag_samples as f64 / 48.0
        ),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
