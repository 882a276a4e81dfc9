//! `udp-probe`: plain sockets for the NAT lab tests (`tests/tests/natlab_behaviour.rs`).
//!
//! ```text
//! udp-probe [--bind ADDR] [--to ADDR]... [--count N] [--interval-ms MS] [--start-ms MS]
//!           [--for-ms MS] [--echo] [--tcp]
//! ```
//!
//! UDP (the default): binds `--bind` (default `0.0.0.0:0`) and prints `bound ADDR`.
//! Sends `--count` rounds (default 1) `--interval-ms` apart (default 100), the first
//! `--start-ms` after the start (default 0), each round one datagram `probe I` to every
//! `--to`. Prints every datagram it receives as `recv FROM PAYLOAD`; with `--echo`
//! answers each with `seen FROM n=K` (K: datagrams received so far), so the sender
//! learns its address as seen from here. Stops `--for-ms` after the start (default:
//! 1000 ms after the last send; an echo server without `--for-ms` runs until killed) and
//! prints `done sent=S recv=R`.
//!
//! TCP (`--tcp`): with `--echo` listens on `--bind` until killed, answers each connection
//! with the line `seen FROM n=K` and prints `recv FROM connect`; otherwise connects to
//! each `--to` (timeout `--for-ms`, default 1000) and prints `recv TO LINE` or
//! `error TO REASON`.
//!
//! Output is line-buffered and flushed per line, so a harness can wait for lines.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

struct Args {
    bind: SocketAddr,
    to: Vec<SocketAddr>,
    count: u32,
    interval: Duration,
    start: Duration,
    run_for: Option<Duration>,
    echo: bool,
    tcp: bool,
}

fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("udp-probe: {e}\nusage: udp-probe [--bind ADDR] [--to ADDR]... [--count N] [--interval-ms MS] [--start-ms MS] [--for-ms MS] [--echo] [--tcp]");
            std::process::exit(2);
        }
    };
    let result = match (args.tcp, args.echo) {
        (false, _) => udp(&args),
        (true, true) => tcp_echo(&args),
        (true, false) => {
            tcp_connect(&args);
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("udp-probe: {e}");
        std::process::exit(1);
    }
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        bind: SocketAddr::from(([0, 0, 0, 0], 0)),
        to: Vec::new(),
        count: 1,
        interval: Duration::from_millis(100),
        start: Duration::ZERO,
        run_for: None,
        echo: false,
        tcp: false,
    };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--bind" => a.bind = value()?.parse().map_err(|e| format!("--bind: {e}"))?,
            "--to" => {
                a.to.push(value()?.parse().map_err(|e| format!("--to: {e}"))?)
            }
            "--count" => a.count = value()?.parse().map_err(|e| format!("--count: {e}"))?,
            "--interval-ms" => a.interval = ms(&value()?)?,
            "--start-ms" => a.start = ms(&value()?)?,
            "--for-ms" => a.run_for = Some(ms(&value()?)?),
            "--echo" => a.echo = true,
            "--tcp" => a.tcp = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn ms(v: &str) -> Result<Duration, String> {
    v.parse()
        .map(Duration::from_millis)
        .map_err(|e| format!("{v}: {e}"))
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn udp(a: &Args) -> std::io::Result<()> {
    let sock = UdpSocket::bind(a.bind)?;
    say(&format!("bound {}", sock.local_addr()?));
    let start = Instant::now();
    let rounds = if a.to.is_empty() { 0 } else { a.count };
    let last_send = a.start + a.interval * rounds.saturating_sub(1);
    let end = match a.run_for {
        Some(d) => Some(start + d),
        None if a.echo && rounds == 0 => None,
        None => Some(start + last_send + Duration::from_secs(1)),
    };
    let (mut round, mut sent, mut received) = (0u32, 0u64, 0u64);
    let mut buf = [0u8; 2048];
    loop {
        let now = Instant::now();
        if end.is_some_and(|e| now >= e) {
            break;
        }
        let next_send = (round < rounds).then(|| start + a.start + a.interval * round);
        if next_send.is_some_and(|t| now >= t) {
            for to in &a.to {
                match sock.send_to(format!("probe {round}").as_bytes(), to) {
                    Ok(_) => sent += 1,
                    Err(e) => say(&format!("send-error {to} {e}")),
                }
            }
            round += 1;
            continue;
        }
        let wake = [next_send, end].into_iter().flatten().min();
        let wait = wake.map_or(Duration::from_secs(3600), |t| t - now);
        sock.set_read_timeout(Some(wait.max(Duration::from_millis(1))))?;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                received += 1;
                say(&format!(
                    "recv {from} {}",
                    String::from_utf8_lossy(&buf[..n]).trim()
                ));
                if a.echo {
                    let reply = format!("seen {from} n={received}");
                    if let Err(e) = sock.send_to(reply.as_bytes(), from) {
                        say(&format!("send-error {from} {e}"));
                    }
                }
            }
            Err(e) if is_timeout(&e) => {}
            // ICMP errors (port unreachable) surface here on Linux; keep going.
            Err(e) => say(&format!("recv-error {e}")),
        }
    }
    say(&format!("done sent={sent} recv={received}"));
    Ok(())
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn tcp_echo(a: &Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(a.bind)?;
    say(&format!("bound {}", listener.local_addr()?));
    let mut accepted = 0u64;
    for stream in listener.incoming() {
        let mut stream = stream?;
        accepted += 1;
        let from = stream.peer_addr()?;
        say(&format!("recv {from} connect"));
        let _ = writeln!(stream, "seen {from} n={accepted}");
    }
    Ok(())
}

fn tcp_connect(a: &Args) {
    let timeout = a.run_for.unwrap_or(Duration::from_secs(1));
    for to in &a.to {
        let line = TcpStream::connect_timeout(to, timeout).and_then(|s| {
            s.set_read_timeout(Some(timeout))?;
            let mut line = String::new();
            BufReader::new(s).read_line(&mut line)?;
            Ok(line)
        });
        match line {
            Ok(line) => say(&format!("recv {to} {}", line.trim())),
            Err(e) => say(&format!("error {to} {e}")),
        }
    }
}
