//! The per-worker control channel (ipc-channel): handshake and lifecycle messages.
//!
//! ```text
//! ampd                                     worker (amp_ipc::Worker::from_env)
//!  | creates IpcOneShotServer, spawns worker with AMP_CONTROL=<server name>
//!  |            <-- Hello { protocol, pid, name, reply }   (connects to the one-shot server)
//!  | Welcome { segment, generation, params, kinds } -->    (or Reject { reason })
//!  |            <-- Attached    (segment mapped: ampd unlinks its name)
//!  |            <-- Ready       (user code called ready())
//!  | Shutdown / Drain / Adjust -->          ...        <-- Draining / Goodbye
//! ```
//!
//! A protocol version mismatch is refused by whichever side sees it first, with a message naming
//! both versions; ampd then stops the worker.

use std::collections::BTreeMap;

use ipc_channel::ipc::IpcSender;
use serde::{Deserialize, Serialize};

/// Version of the control protocol and of the record formats in [`crate::wire`].
///
/// 2: task records may carry `TASK_CHUNK` ([`crate::chunk`]); a worker built before it would
/// treat a chunk as one plain task, so ampd refuses it.
pub const PROTOCOL_VERSION: u32 = 2;

/// Environment variable carrying the one-shot server name.
pub const ENV_CONTROL: &str = "AMP_CONTROL";
/// Environment variable carrying the doorbell fds: `"<tasks>,<completions>"` (the worker waits on
/// the first and rings the second).
pub const ENV_DOORBELLS: &str = "AMP_DOORBELLS";
/// Environment variable carrying the worker's name (`group` or `group#replica`).
pub const ENV_WORKER: &str = "AMP_WORKER";
/// The fd number the tasks doorbell is given at in a worker.
pub const TASKS_DOORBELL_FD: i32 = 3;
/// The fd number the completions doorbell is given at in a worker.
pub const COMPLETIONS_DOORBELL_FD: i32 = 4;

/// Worker → ampd.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// First message: who the worker is and where to answer.
    Hello {
        /// [`PROTOCOL_VERSION`] of the worker's amp-ipc.
        protocol: u32,
        /// The worker's pid.
        pid: u32,
        /// The name it was given in [`ENV_WORKER`].
        name: String,
        /// Where ampd sends [`ToWorker`] messages.
        reply: IpcSender<ToWorker>,
    },
    /// The segment is mapped; ampd may unlink its name.
    Attached,
    /// The worker is ready for tasks.
    Ready,
    /// The worker stopped taking tasks (answer to Drain or Shutdown).
    Draining,
    /// The worker is exiting.
    Goodbye {
        /// Why.
        reason: String,
    },
}

/// Parameters ampd hands a worker; adjustable later with [`ToWorker::Adjust`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerParams {
    /// How often the runtime writes its heartbeat (ms).
    pub heartbeat_interval_ms: u64,
    /// Spin window of the worker's task wait (ring checks).
    pub spin: u32,
    /// Completions the runtime batches before publishing (1 = publish each).
    pub publish_every: u32,
    /// Free-form tuned parameters a worker applies itself (e.g. `"chunk"`, `"threads"`).
    pub extra: BTreeMap<String, f64>,
}

impl Default for WorkerParams {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 100,
            spin: crate::signal::DEFAULT_SPIN,
            publish_every: 1,
            extra: BTreeMap::new(),
        }
    }
}

/// ampd → worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ToWorker {
    /// Handshake accepted: map this segment.
    Welcome {
        /// The segment's name in /dev/shm.
        segment: String,
        /// Its generation (checked against the header).
        generation: u64,
        /// Runtime parameters.
        params: WorkerParams,
        /// Kind ids and names this worker serves (task records carry the id).
        kinds: Vec<(u32, String)>,
    },
    /// Handshake refused.
    Reject {
        /// Why (e.g. a version mismatch).
        reason: String,
    },
    /// Finish the current task and exit.
    Shutdown,
    /// Stop taking tasks (ampd stops feeding); finish what is queued.
    Drain,
    /// New parameter values.
    Adjust {
        /// The new parameters.
        params: WorkerParams,
    },
}
