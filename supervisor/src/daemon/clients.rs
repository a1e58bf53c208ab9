//! Clients attached through the control socket: each has its own segment; submissions arrive on
//! its "completions" ring, results leave on its "tasks" ring.

use std::sync::Arc;

use amp_ipc::link::SupervisorEnd;
use amp_ipc::segment::{Segment, SegmentConfig};
use amp_ipc::signal::Doorbell;
use amp_ipc::wire::{ResultHeader, RESULT_HEADER_SIZE, TAG_RESULT};
use slab::Slab;

/// One attached client.
#[derive(Debug)]
pub struct ClientRt {
    /// Its control connection (the lifeline).
    pub conn: usize,
    /// Its segment.
    pub seg: Arc<Segment>,
    /// Rings: `tasks` carries results to it, `completions` carries its submissions.
    pub end: SupervisorEnd,
    /// It confirmed the mapping (the name is unlinked).
    pub attached: bool,
    /// Results that did not fit in its ring yet (it is slow to read them).
    pub backlog: std::collections::VecDeque<(ResultHeader, Vec<u8>)>,
}

/// What the attach answer needs.
#[derive(Debug)]
pub struct Attach {
    /// Client id (slab key).
    pub id: usize,
    /// Segment name.
    pub segment: String,
    /// Doorbells to pass: (results bell the client waits on, submissions bell it rings).
    pub fds: (std::os::fd::OwnedFd, std::os::fd::OwnedFd),
}

/// The client table.
#[derive(Debug, Default)]
pub struct Clients {
    /// Clients by id.
    pub slab: Slab<ClientRt>,
}

impl Clients {
    /// Creates a client's segment and doorbells.
    ///
    /// # Errors
    /// A message for the error response.
    pub fn attach(
        &mut self,
        conn: usize,
        prefix: &str,
        cfg: &SegmentConfig,
    ) -> Result<Attach, String> {
        let mut seg = Segment::create(prefix, cfg, 1).map_err(|e| e.to_string())?;
        seg.set_unlink_on_drop(true);
        let seg = Arc::new(seg);
        let results_bell = Doorbell::new().map_err(|e| e.to_string())?;
        let submissions_bell = Doorbell::new().map_err(|e| e.to_string())?;
        let fds = (
            results_bell.try_clone_fd().map_err(|e| e.to_string())?,
            submissions_bell.try_clone_fd().map_err(|e| e.to_string())?,
        );
        let end =
            SupervisorEnd::new(&seg, results_bell, submissions_bell).map_err(|e| e.to_string())?;
        let segment = seg.name().to_owned();
        let id = self.slab.insert(ClientRt {
            conn,
            seg,
            end,
            attached: false,
            backlog: Default::default(),
        });
        Ok(Attach { id, segment, fds })
    }

    /// Confirms a client's mapping: unlinks the segment name.
    ///
    /// # Errors
    /// When the id is unknown or belongs to another connection.
    pub fn attached(&mut self, conn: usize, id: u64) -> Result<(), String> {
        let c = usize::try_from(id)
            .ok()
            .and_then(|i| self.slab.get_mut(i))
            .filter(|c| c.conn == conn);
        let Some(c) = c else {
            return Err(format!("client {id} is not attached on this connection"));
        };
        c.attached = true;
        c.seg.unlink().map_err(|e| e.to_string())
    }

    /// Whether some client's results wait for room in its ring ([`ClientRt::backlog`]).
    pub fn any_backlog(&self) -> bool {
        self.slab.iter().any(|(_, c)| !c.backlog.is_empty())
    }

    /// Clients of a closed connection, removed.
    pub fn remove_conn(&mut self, conn: usize) -> Vec<(usize, ClientRt)> {
        let ids: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, c)| c.conn == conn)
            .map(|(i, _)| i)
            .collect();
        ids.into_iter()
            .filter_map(|i| self.slab.try_remove(i).map(|c| (i, c)))
            .collect()
    }
}

impl ClientRt {
    /// Writes a result (or queues it when the ring is full); returns whether anything was
    /// committed (the caller flushes once per batch).
    pub fn push_result(&mut self, h: ResultHeader, body: &[u8]) -> bool {
        if !self.backlog.is_empty() {
            self.backlog.push_back((h, body.to_vec()));
            return self.drain_backlog();
        }
        if self.write(&h, body) {
            true
        } else {
            self.backlog.push_back((h, body.to_vec()));
            false
        }
    }

    fn write(&mut self, h: &ResultHeader, body: &[u8]) -> bool {
        let max = usize::try_from(self.seg.layout().tasks.max_record).unwrap_or(usize::MAX);
        // A result larger than the client's ring accepts is not cut short silently: the client
        // gets a failure saying why.
        let too_large;
        let (h, body) = if RESULT_HEADER_SIZE + body.len() > max {
            too_large = format!(
                "result of {} bytes exceeds this client's ring max_record of {max} bytes",
                body.len()
            );
            let failed = ResultHeader {
                status: amp_ipc::wire::ResultStatus::Failed,
                ..*h
            };
            (failed, too_large.as_bytes())
        } else {
            (*h, body)
        };
        match self
            .end
            .tasks
            .reserve(RESULT_HEADER_SIZE + body.len(), TAG_RESULT)
        {
            Ok(mut r) => {
                h.write(&mut r);
                r[RESULT_HEADER_SIZE..].copy_from_slice(body);
                r.commit();
                true
            }
            Err(_) => false,
        }
    }

    /// Retries queued results; returns whether anything was committed.
    pub fn drain_backlog(&mut self) -> bool {
        let mut any = false;
        while let Some((h, body)) = self.backlog.pop_front() {
            if self.write(&h, &body) {
                any = true;
            } else {
                self.backlog.push_front((h, body));
                break;
            }
        }
        any
    }
}
