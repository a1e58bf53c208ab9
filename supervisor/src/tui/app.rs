//! The shell around the model: the terminal loop (keys in, frames out) and the polling thread
//! (control requests out, [`Update`]s in).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;

use super::model::{Command, Input, Model, Snapshot, Update};
use super::{view, TopError, POLL_INTERVAL};
use crate::control::client::Client;

/// How long one control request may take before the poll counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the terminal loop waits for a key before looking for updates.
const TICK: Duration = Duration::from_millis(50);

/// Runs `ampctl top` against the ampd listening at `socket` until the user quits.
///
/// ampd need not be reachable: the view says it is not and keeps retrying.
///
/// # Errors
/// [`TopError::Terminal`] when the terminal cannot be used (not a terminal, I/O error);
/// [`TopError::PollerGone`] if the polling thread died.
pub fn run(socket: &Path) -> Result<(), TopError> {
    let mut tui = Tui::new()?;
    let start = Instant::now();
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>();
    let (upd_tx, upd_rx) = mpsc::channel::<Update>();
    let poller = Poller::new(socket);
    std::thread::Builder::new()
        .name("ampctl-top-poll".into())
        .spawn(move || poller.run(start, &cmd_rx, &upd_tx))?;
    let mut model = Model::new(socket.display().to_string());
    let mut dirty = true;
    loop {
        if dirty {
            tui.terminal.draw(|f| view::render(f, &model))?;
            dirty = false;
        }
        if event::poll(TICK)? {
            match event::read()? {
                Event::Key(k) => {
                    if let Some(input) = input_for_key(&k) {
                        match model.handle(input) {
                            Some(Command::Quit) => return Ok(()),
                            Some(cmd) => cmd_tx.send(cmd).map_err(|_| TopError::PollerGone)?,
                            None => {}
                        }
                        dirty = true;
                    }
                }
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        loop {
            match upd_rx.try_recv() {
                Ok(u) => {
                    model.update(u);
                    dirty = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Err(TopError::PollerGone),
            }
        }
    }
}

/// The key bindings: `q`/`Esc`/`Ctrl-C` quit, `s` sort, `↑`/`k` and `↓`/`j` select, `d` drain,
/// `r` restart. Key releases and repeats of other keys are ignored.
#[must_use]
pub fn input_for_key(k: &KeyEvent) -> Option<Input> {
    if k.kind == KeyEventKind::Release {
        return None;
    }
    Some(match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Input::Quit,
        KeyCode::Char('q') | KeyCode::Esc => Input::Quit,
        KeyCode::Char('s') => Input::NextSort,
        KeyCode::Up | KeyCode::Char('k') => Input::Up,
        KeyCode::Down | KeyCode::Char('j') => Input::Down,
        KeyCode::Char('d') => Input::Drain,
        KeyCode::Char('r') => Input::Restart,
        _ => return None,
    })
}

/// The terminal in raw mode on the alternate screen; restored when dropped (and by ratatui's
/// panic hook on a panic).
struct Tui {
    terminal: DefaultTerminal,
}

impl Tui {
    fn new() -> std::io::Result<Self> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                // Raw mode may be on already when entering the alternate screen failed.
                let _ = ratatui::try_restore();
                Err(e)
            }
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        let _ = ratatui::try_restore();
    }
}

/// The polling side: one control connection, reopened after any failure.
struct Poller {
    path: PathBuf,
    conn: Option<Client>,
    /// Newest event seen (`None`: ask for all of them).
    since: Option<u64>,
    /// The pid of the ampd the events came from.
    ampd_pid: Option<u64>,
}

impl Poller {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            conn: None,
            since: None,
            ampd_pid: None,
        }
    }

    /// Polls every [`POLL_INTERVAL`] and runs the commands it is sent, until the terminal side
    /// hangs up.
    fn run(mut self, start: Instant, cmds: &Receiver<Command>, out: &Sender<Update>) {
        let mut next = Instant::now();
        loop {
            match cmds.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Ok(cmd) => {
                    let (Command::Drain(name) | Command::Restart(name)) = &cmd else {
                        return;
                    };
                    let Some(req) = cmd.request() else {
                        return;
                    };
                    let upd = Update::Action {
                        verb: cmd.verb(),
                        name: name.clone(),
                        result: self.call(req).map(|_| ()),
                    };
                    if out.send(upd).is_err() {
                        return;
                    }
                    // Show the effect at once.
                    next = Instant::now();
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let upd = match self.poll() {
                Ok(snap) => Update::Snapshot {
                    snap: Box::new(snap),
                    at: start.elapsed(),
                },
                Err(error) => Update::Down {
                    error,
                    at: start.elapsed(),
                },
            };
            if out.send(upd).is_err() {
                return;
            }
            next = Instant::now() + POLL_INTERVAL;
        }
    }

    fn poll(&mut self) -> Result<Snapshot, String> {
        let status = self.call(serde_json::json!({"cmd": "status"}))?;
        let pid = status.get("pid").and_then(serde_json::Value::as_u64);
        if pid != self.ampd_pid {
            // Another ampd: its event numbers start over.
            self.ampd_pid = pid;
            self.since = None;
        }
        let workers = self.call(serde_json::json!({"cmd": "workers"}))?;
        let stats = self.call(serde_json::json!({"cmd": "stats"}))?;
        let events = self.call(match self.since {
            Some(s) => serde_json::json!({"cmd": "events", "since": s}),
            None => serde_json::json!({"cmd": "events"}),
        })?;
        // Last: a refusal (an ampd without `tune`) is shown in the adaptive panel, not as a
        // failed poll, and a broken connection is reopened by the next poll.
        let tune = self.call(serde_json::json!({"cmd": "tune", "op": "show"}));
        let snap = Snapshot::from_data(status, &workers, &stats, &events)
            .map_err(|e| e.to_string())?
            .with_tune(tune);
        if let Some(newest) = snap.events.iter().map(|e| e.seq).max() {
            self.since = Some(newest);
        }
        Ok(snap)
    }

    /// One request; its `data` on success. A broken connection is dropped, to be reopened by
    /// the next call.
    fn call(&mut self, req: serde_json::Value) -> Result<serde_json::Value, String> {
        let cmd = req["cmd"].as_str().unwrap_or("?").to_owned();
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self
                .conn
                .insert(Client::connect(&self.path, REQUEST_TIMEOUT).map_err(|e| e.to_string())?),
        };
        match conn.request(req) {
            Ok(r) if r.ok => Ok(r.data.unwrap_or(serde_json::Value::Null)),
            Ok(r) => Err(format!(
                "ampd refused `{cmd}`: {}",
                r.error.as_deref().unwrap_or("no reason given")
            )),
            Err(e) => {
                self.conn = None;
                Err(e.to_string())
            }
        }
    }
}
