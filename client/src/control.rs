//! One client per identity: the lock that makes a home directory one process's, and the
//! control socket through which other `parley` commands use the running client.
//!
//! - `client.lock` in the home is held locked (an OS file lock, released when the process
//!   dies) by whichever process uses the identity on the network: `parley online`, or a
//!   short-lived `parley call` when no client runs. It holds that process's pid and role,
//!   so a second one can say who is in the way.
//! - `control.sock` (a Unix socket, mode 0600: only the owner can connect) is opened by
//!   `parley online`. A command sends one JSON line, a [`Request`]; the client answers with
//!   JSON lines: the command's events (each with its sentence under `"text"`) and last
//!   `{"exit": CODE}`. Closing the connection early cancels what it asked (a call in
//!   progress is hung up).

use crate::call::CallOptions;
use crate::home::Home;
use crate::output::{Failure, Printer, EXIT_FAILED};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, watch};

/// Longest request line accepted on the control socket.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// What a command asks of the running client.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// Place a call with these options (files already checked and made absolute).
    Call {
        callee: String,
        contact: Option<String>,
        opts: CallOptions,
    },
    /// Send a file (checked, made absolute, recipients resolved to ids).
    Send {
        req: crate::transfer::send::SendRequest,
    },
    /// End the call in progress (or stop it ringing).
    Hangup,
    /// Send silence instead of the microphone.
    Mute,
    Unmute,
    /// Answer or decline the call ringing now.
    Answer,
    Decline,
    /// Who we are, attachments, the call in progress.
    Status,
    /// Contacts with their presence.
    Contacts,
    /// Look an id up through our attachment.
    Lookup {
        id: String,
    },
    /// Host a conference call with these people (issue 16): ids with their contact
    /// names.
    Conference {
        callees: Vec<(String, Option<String>)>,
        opts: CallOptions,
    },
    /// Call someone into the running conference.
    Add {
        callee: String,
        contact: Option<String>,
    },
}

/// A request as the running client's loop receives it.
pub struct Command {
    pub request: Request,
    /// Events for the asking command, then `{"exit": N}`.
    pub reply: mpsc::UnboundedSender<Value>,
    /// Becomes true when the asking command goes away.
    pub gone: watch::Receiver<bool>,
}

/// The lock on a home directory, held while this value lives.
pub struct InstanceLock {
    _file: File,
}

impl InstanceLock {
    /// Takes the home's lock for `role` (`online`, `call`), or says who holds it.
    pub fn acquire(home: &Home, role: &str) -> Result<InstanceLock> {
        std::fs::create_dir_all(home.dir())?;
        let path = home.lock_path();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // flock(2), not std's File::try_lock: that needs Rust 1.89, the MSRV is 1.85.
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = match holder.split_once(' ') {
                    Some((pid, role)) => format!("`parley {role}` (pid {pid})"),
                    None => "another parley process".to_string(),
                };
                return Err(Failure {
                    code: EXIT_FAILED,
                    message: format!(
                        "{who} is already running for the identity in {}: one client per \
                         identity (stop it first, or use commands that talk to it)",
                        home.dir().display()
                    ),
                }
                .into());
            }
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        write!(file, "{} {role}", std::process::id())?;
        file.flush()?;
        Ok(InstanceLock { _file: file })
    }
}

/// Opens the control socket (the caller holds the home's lock, so an old socket file is
/// stale) and hands every request to `tx`.
pub fn serve(home: &Home, tx: mpsc::Sender<Command>) -> Result<()> {
    let path = home.control_path();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot open the control socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_one(stream, tx.clone()));
        }
    });
    Ok(())
}

async fn serve_one(stream: UnixStream, tx: mpsc::Sender<Command>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read.take(MAX_REQUEST_BYTES));
    let mut line = String::new();
    if read.read_line(&mut line).await.is_err() {
        return;
    }
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let reply = serde_json::json!({"event": "error", "error": format!("bad control request: {e}"), "exit_code": crate::output::EXIT_USAGE, "text": ""});
            let _ = write
                .write_all(format!("{reply}\n{{\"exit\":2}}\n").as_bytes())
                .await;
            return;
        }
    };
    let (reply, mut replies) = mpsc::unbounded_channel();
    let (gone_tx, gone) = watch::channel(false);
    if tx
        .send(Command {
            request,
            reply,
            gone,
        })
        .await
        .is_err()
    {
        return;
    }
    // The asker closing its end (Ctrl-C) cancels what it asked.
    let mut rest = read.into_inner().into_inner();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while matches!(rest.read(&mut buf).await, Ok(n) if n > 0) {}
        gone_tx.send_replace(true);
    });
    while let Some(v) = replies.recv().await {
        if write.write_all(format!("{v}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A connection to the running client of this home, if one runs.
pub async fn connect(home: &Home) -> Option<UnixStream> {
    UnixStream::connect(home.control_path()).await.ok()
}

/// Sends `request` to the running client and prints what comes back as if this command
/// had done it; returns the exit code.
pub async fn remote(stream: UnixStream, request: &Request, out: Printer) -> Result<i32> {
    let (read, mut write) = stream.into_split();
    let line = serde_json::to_string(request)? + "\n";
    write.write_all(line.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    let mut stop = std::pin::pin!(parley_net::shutdown_signal());
    let mut stopped = false;
    loop {
        let line = tokio::select! {
            // Closing our end tells the running client to cancel; then wait for its word.
            _ = &mut stop, if !stopped => {
                stopped = true;
                let _ = write.shutdown().await;
                continue;
            }
            l = lines.next_line() => l?,
        };
        let Some(line) = line else {
            bail!("the running client closed the connection without an answer");
        };
        let Ok(mut v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(code) = v.get("exit").and_then(Value::as_i64) {
            return Ok(code as i32);
        }
        let text = v
            .as_object_mut()
            .and_then(|o| o.remove("text"))
            .and_then(|t| t.as_str().map(str::to_string))
            .unwrap_or_default();
        let event = v
            .as_object_mut()
            .and_then(|o| o.remove("event"))
            .and_then(|e| e.as_str().map(str::to_string))
            .unwrap_or_default();
        match event.as_str() {
            "error" => out.error(
                v["error"].as_str().unwrap_or_default(),
                v["exit_code"].as_i64().unwrap_or(1) as i32,
            ),
            "warning" => out.warning(v["warning"].as_str().unwrap_or_default()),
            _ => out.event(&event, v, text),
        }
    }
}

/// Sends `request` to the running client and collects what comes back: its events and
/// the exit code (the terminal UI's way of asking).
pub async fn ask(home: &Home, request: &Request) -> Result<(Vec<Value>, i32)> {
    let stream = connect(home).await.context("no client is running")?;
    let (read, mut write) = stream.into_split();
    write
        .write_all((serde_json::to_string(request)? + "\n").as_bytes())
        .await?;
    let mut lines = BufReader::new(read).lines();
    let mut events = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(code) = v.get("exit").and_then(Value::as_i64) {
            return Ok((events, code as i32));
        }
        events.push(v);
    }
    bail!("the running client closed the connection without an answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_first_holder() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path().to_path_buf())).unwrap();
        let first = InstanceLock::acquire(&home, "online").unwrap();
        let e = InstanceLock::acquire(&home, "call").err().unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("parley online"), "{msg}");
        drop(first);
        InstanceLock::acquire(&home, "call").unwrap();
    }

    #[tokio::test]
    async fn the_control_socket_is_owner_only_and_answers_requests() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::resolve(Some(dir.path().to_path_buf())).unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        serve(&home, tx).unwrap();
        let mode = std::fs::metadata(home.control_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                assert!(matches!(cmd.request, Request::Status));
                let _ = cmd
                    .reply
                    .send(serde_json::json!({"event": "status", "text": "ok"}));
                let _ = cmd.reply.send(serde_json::json!({"exit": 0}));
            }
        });
        let stream = connect(&home).await.unwrap();
        let code = remote(stream, &Request::Status, Printer::local(true))
            .await
            .unwrap();
        assert_eq!(code, 0);
        // Garbage gets a usage error, not a crash.
        let mut s = connect(&home).await.unwrap();
        s.write_all(b"{nonsense\n").await.unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).await.unwrap();
        assert!(reply.contains("\"exit\":2"), "{reply}");
    }
}
