//! Brings ipc-channel control messages into the mio loop.
//!
//! ipc-channel receivers do not expose an fd, so one bridge thread (for all workers, not one
//! per worker) blocks in `IpcReceiverSet::select` and forwards each message through an mpsc queue,
//! waking the loop with a `mio::Waker`. New receivers reach the bridge over an ipc channel of its
//! own, which is part of the set. Handshakes (`IpcOneShotServer::accept` blocks) run on a short
//! lived thread per spawn that ends as soon as the worker connects, or when ampd abandons the
//! handshake by connecting to the server itself.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::Arc;

use amp_ipc::proto::FromWorker;
use ipc_channel::ipc::{
    self, IpcOneShotServer, IpcReceiver, IpcReceiverSet, IpcSelectionResult, IpcSender,
};
use serde::{Deserialize, Serialize};

/// Identifies one spawn of one unit (unit index + spawn generation), so messages from a previous
/// incarnation are recognised and dropped.
pub type Conn = (usize, u64);

/// What the bridge delivers to the loop.
#[derive(Debug)]
pub enum BridgeMsg {
    /// A worker connected and said Hello (or something else first).
    Accepted(Conn, FromWorker),
    /// A handshake thread failed (the server broke).
    AcceptFailed(Conn, String),
    /// A later message on an established channel.
    Message(Conn, FromWorker),
    /// The worker's end of the channel closed.
    Closed(Conn),
}

#[derive(Debug, Serialize, Deserialize)]
enum BridgeCmd {
    Add {
        conn: Conn,
        rx: IpcReceiver<FromWorker>,
    },
    Stop,
}

/// The loop's handle on the bridge.
#[derive(Debug)]
pub struct Bridge {
    cmd: IpcSender<BridgeCmd>,
    tx: mpsc::Sender<BridgeMsg>,
    rx: mpsc::Receiver<BridgeMsg>,
    waker: Arc<mio::Waker>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Bridge {
    /// Starts the bridge thread; `waker` wakes the loop when messages are queued.
    ///
    /// # Errors
    /// When the channel or the thread cannot be created.
    pub fn start(waker: Arc<mio::Waker>) -> std::io::Result<Self> {
        let (cmd, cmd_rx) = ipc::channel::<BridgeCmd>()?;
        let (tx, rx) = mpsc::channel();
        let mut set = IpcReceiverSet::new()?;
        let cmd_id = set.add(cmd_rx)?;
        let (ttx, twaker) = (tx.clone(), Arc::clone(&waker));
        let thread = std::thread::Builder::new()
            .name("amp-bridge".into())
            .spawn(move || {
                let mut conns: HashMap<u64, Conn> = HashMap::new();
                loop {
                    let Ok(results) = set.select() else { return };
                    for r in results {
                        match r {
                            IpcSelectionResult::MessageReceived(id, msg) if id == cmd_id => {
                                match msg.to::<BridgeCmd>() {
                                    Ok(BridgeCmd::Add { conn, rx }) => {
                                        if let Ok(nid) = set.add(rx) {
                                            conns.insert(nid, conn);
                                        }
                                    }
                                    Ok(BridgeCmd::Stop) | Err(_) => return,
                                }
                            }
                            IpcSelectionResult::MessageReceived(id, msg) => {
                                if let (Some(&conn), Ok(m)) =
                                    (conns.get(&id), msg.to::<FromWorker>())
                                {
                                    let _ = ttx.send(BridgeMsg::Message(conn, m));
                                    let _ = twaker.wake();
                                }
                            }
                            IpcSelectionResult::ChannelClosed(id) => {
                                if id == cmd_id {
                                    return;
                                }
                                if let Some(conn) = conns.remove(&id) {
                                    let _ = ttx.send(BridgeMsg::Closed(conn));
                                    let _ = twaker.wake();
                                }
                            }
                        }
                    }
                }
            })?;
        Ok(Self {
            cmd,
            tx,
            rx,
            waker,
            thread: Some(thread),
        })
    }

    /// Opens a one-shot server for a worker about to be spawned and waits for it on a short
    /// lived thread. Returns the server name to put in the worker's environment.
    ///
    /// # Errors
    /// When the server or the thread cannot be created.
    pub fn expect(&self, conn: Conn) -> std::io::Result<String> {
        let (server, name) = IpcOneShotServer::<FromWorker>::new()?;
        let (tx, waker, cmd) = (self.tx.clone(), Arc::clone(&self.waker), self.cmd.clone());
        std::thread::Builder::new()
            .name("amp-handshake".into())
            .spawn(move || {
                match server.accept() {
                    Ok((rx, first)) => {
                        let _ = tx.send(BridgeMsg::Accepted(conn, first));
                        let _ = cmd.send(BridgeCmd::Add { conn, rx });
                    }
                    Err(e) => {
                        let _ = tx.send(BridgeMsg::AcceptFailed(conn, e.to_string()));
                    }
                }
                let _ = waker.wake();
            })?;
        Ok(name)
    }

    /// Unblocks a handshake nobody will complete (the worker died or timed out before it
    /// connected): connects to the server and says Goodbye, which the loop then ignores.
    pub fn abandon(server_name: &str) {
        if let Ok(s) = IpcSender::<FromWorker>::connect(server_name.to_owned()) {
            let _ = s.send(FromWorker::Goodbye {
                reason: "handshake abandoned by ampd".into(),
            });
        }
    }

    /// Messages queued so far.
    pub fn drain(&self) -> impl Iterator<Item = BridgeMsg> + '_ {
        self.rx.try_iter()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.cmd.send(BridgeCmd::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
