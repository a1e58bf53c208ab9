//! `amp-sleep`: sleeps for the time the payload asks (ms as text, or 8-byte LE µs), scaled by
//! `AMP_SLEEP_FACTOR` (default 1.0: a slow worker is simulated with e.g. 3.0), and echoes the
//! payload.
//!
//! For benchmarks and tests (see the worker guide):
//! - `AMP_SLEEP_CONTROL=PATH`: a file read again whenever its modification time changes (looked
//!   at no more than every 20 ms): a number multiplies every sleep on top of
//!   `AMP_SLEEP_FACTOR` (`4`: this replica is now 4× slower), `stall MS` makes every task take
//!   MS milliseconds whatever it asks, and an empty or missing file restores the base speed.
//! - Words after the time in a text payload: `fail1` fails the task's first attempt with a
//!   retryable error, `crash` aborts the process (a poison task), `who` appends ` @UNIT` (this
//!   replica's unit name) to the echoed payload.
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

/// The speed in force, from `AMP_SLEEP_CONTROL`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Speed {
    Factor(f64),
    Stall(Duration),
}

/// Follows the control file.
struct Control {
    path: Option<PathBuf>,
    checked: Option<Instant>,
    modified: Option<(SystemTime, u64)>,
    speed: Speed,
}

impl Control {
    fn speed(&mut self) -> Speed {
        let Some(path) = &self.path else {
            return self.speed;
        };
        let now = Instant::now();
        if self
            .checked
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(20))
        {
            return self.speed;
        }
        self.checked = Some(now);
        // Length too: two writes within one mtime tick (truncate, then write) must not leave
        // the empty intermediate state in force.
        let modified = std::fs::metadata(path)
            .and_then(|m| m.modified().map(|t| (t, m.len())))
            .ok();
        if modified != self.modified {
            self.modified = modified;
            let text = std::fs::read_to_string(path).unwrap_or_default();
            self.speed = parse_control(&text).unwrap_or_else(|e| {
                eprintln!("amp-sleep: {}: {e}; using the base speed", path.display());
                Speed::Factor(1.0)
            });
        }
        self.speed
    }
}

fn parse_control(text: &str) -> Result<Speed, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Speed::Factor(1.0));
    }
    if let Some(ms) = text.strip_prefix("stall") {
        let ms: f64 = ms
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: write `stall MS`"))?;
        if !(0.0..3.6e6).contains(&ms) {
            return Err(format!("`{text}`: MS must be in 0..3600000"));
        }
        return Ok(Speed::Stall(Duration::from_secs_f64(ms / 1e3)));
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() && f >= 0.0 => Ok(Speed::Factor(f)),
        _ => Err(format!(
            "`{text}`: write a factor (e.g. `4`), `stall MS`, or nothing"
        )),
    }
}

fn main() -> ExitCode {
    let factor: f64 = std::env::var("AMP_SLEEP_FACTOR")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let unit = std::env::var(amp_ipc::proto::ENV_WORKER).unwrap_or_default();
    let mut control = Control {
        path: std::env::var_os("AMP_SLEEP_CONTROL").map(PathBuf::from),
        checked: None,
        modified: None,
        speed: Speed::Factor(1.0),
    };
    amp_worker::serve(move |t| {
        let d = match amp_worker::parse_sleep(t.payload) {
            Ok(d) => d,
            Err(message) => {
                return amp_ipc::Outcome::Err {
                    retryable: false,
                    message,
                }
            }
        };
        let words = std::str::from_utf8(t.payload).unwrap_or("");
        let has = |w: &str| words.split_whitespace().skip(1).any(|x| x == w);
        if has("crash") {
            std::process::abort();
        }
        // At most an hour, like the payload itself (a huge factor must not overflow).
        let d = match control.speed() {
            Speed::Factor(f) => {
                let secs = d.as_secs_f64() * factor * f;
                Duration::from_secs_f64(if secs.is_finite() {
                    secs.clamp(0.0, 3600.0)
                } else {
                    3600.0
                })
            }
            Speed::Stall(s) => s,
        };
        std::thread::sleep(d);
        if has("fail1") && t.attempt <= 1 {
            return amp_ipc::Outcome::Err {
                retryable: true,
                message: "transient failure (fail1)".into(),
            };
        }
        let mut body = t.payload.to_vec();
        if has("who") {
            body.extend_from_slice(format!(" @{unit}").as_bytes());
        }
        amp_ipc::Outcome::Ok(body)
    })
}

#[cfg(test)]
mod tests {
    use super::{parse_control, Speed};
    use std::time::Duration;

    #[test]
    fn control_file_grammar() {
        assert_eq!(parse_control(""), Ok(Speed::Factor(1.0)));
        assert_eq!(parse_control(" 4\n"), Ok(Speed::Factor(4.0)));
        assert_eq!(
            parse_control("stall 2000"),
            Ok(Speed::Stall(Duration::from_secs(2)))
        );
        assert!(parse_control("fast").is_err());
        assert!(parse_control("-1").is_err());
        assert!(parse_control("stall x").is_err());
        assert!(parse_control("stall 1e9").is_err());
    }
}
