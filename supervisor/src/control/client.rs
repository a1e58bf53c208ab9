//! A blocking client for the control socket (used by `ampctl` and the tests).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::proto::{Response, CONTROL_VERSION};

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket path (ampd not running, or another path).
    #[error("cannot reach ampd at {path}: {source} (is ampd running? set --socket or AMP_SOCKET)")]
    Unreachable {
        /// The socket path tried.
        path: String,
        /// The connect error.
        source: io::Error,
    },
    /// The connection broke or timed out mid-request.
    #[error("control connection failed: {0}")]
    Io(#[from] io::Error),
    /// ampd answered something that is not a response line.
    #[error("malformed response from ampd: {0}")]
    Malformed(String),
}

/// A connection to ampd's control socket.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects, with `timeout` applied to every later read and write.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`].
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let s = UnixStream::connect(path).map_err(|source| ClientError::Unreachable {
            path: path.display().to_string(),
            source,
        })?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let writer = s.try_clone()?;
        Ok(Self {
            reader: BufReader::new(s),
            writer,
        })
    }

    /// Sends a request given as a JSON object without `v` (e.g. `{"cmd":"status"}`) and waits
    /// for its response.
    ///
    /// # Errors
    /// I/O errors and malformed responses.
    pub fn request(&mut self, mut req: serde_json::Value) -> Result<Response, ClientError> {
        if let Some(o) = req.as_object_mut() {
            o.insert("v".into(), CONTROL_VERSION.into());
        }
        let mut line =
            serde_json::to_vec(&req).map_err(|e| ClientError::Malformed(e.to_string()))?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        self.read_response()
    }

    /// Changes the read timeout (`None`: wait forever, for streams).
    ///
    /// # Errors
    /// Socket errors.
    pub fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<(), ClientError> {
        Ok(self.reader.get_ref().set_read_timeout(t)?)
    }

    /// Reads the next response line (for streaming commands).
    ///
    /// # Errors
    /// I/O errors, EOF, and malformed responses.
    pub fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut buf = String::new();
        if self.reader.read_line(&mut buf)? == 0 {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ampd closed the connection",
            )));
        }
        serde_json::from_str(&buf)
            .map_err(|e| ClientError::Malformed(format!("{e}: {}", buf.trim_end())))
    }
}

/// One-shot request helper.
///
/// # Errors
/// As [`Client::connect`] and [`Client::request`].
pub fn request(
    path: &Path,
    req: serde_json::Value,
    timeout: Duration,
) -> Result<Response, ClientError> {
    Client::connect(path, timeout)?.request(req)
}
