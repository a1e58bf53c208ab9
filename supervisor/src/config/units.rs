//! Humane units in the config file: durations (`"500ms"`, `"1m30s"`), byte sizes (`"64KiB"` or a
//! plain integer), and signal names (`"SIGTERM"` / `"TERM"`), with their serde adapters.

use nix::sys::signal::Signal;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::fmt;
use std::time::Duration;

/// What every duration error ends with, so the user sees the accepted forms.
const DURATION_FORMS: &str =
    "write a number with a unit (h, m, s, ms, us), e.g. \"500ms\", \"2s\" or \"1m30s\"";

/// Units of a duration, largest first, with their length in nanoseconds.
const DURATION_UNITS: [(&str, u128); 5] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
];

/// Parses a humane duration: one or more `<number><unit>` parts, units from largest to smallest,
/// each at most once. Units: `h`, `m`, `s`, `ms`, `us`. A part may carry a decimal fraction
/// (`"1.5s"`). A bare number is refused: the unit must be explicit.
///
/// ```
/// use amp_supervisor::config::parse_duration;
/// use std::time::Duration;
/// assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse_duration("500").is_err());
/// ```
///
/// # Errors
/// A message saying what is wrong with `text` and which forms are accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if text.is_empty() {
        return Err(format!("empty duration: {DURATION_FORMS}"));
    }
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut total: u128 = 0;
    // Index into DURATION_UNITS of the last unit used; the next one must be smaller.
    let mut last_unit: Option<usize> = None;
    while pos < bytes.len() {
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_digits = &text[start..pos];
        let mut frac_digits = "";
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_digits = &text[frac_start..pos];
            if frac_digits.is_empty() {
                return Err(format!("invalid duration {text:?}: a digit must follow the decimal point; {DURATION_FORMS}"));
            }
        }
        if int_digits.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: expected a number at {:?}; {DURATION_FORMS}",
                &text[start..]
            ));
        }
        if int_digits.len() > 18 || frac_digits.len() > 9 {
            return Err(format!(
                "invalid duration {text:?}: too many digits; {DURATION_FORMS}"
            ));
        }
        let unit_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_alphabetic() {
            pos += 1;
        }
        let unit = &text[unit_start..pos];
        if unit.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: the number {:?} has no unit; {DURATION_FORMS}",
                &text[start..pos]
            ));
        }
        let Some(index) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?}; {DURATION_FORMS}"
            ));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(format!(
                "invalid duration {text:?}: units must go from largest to smallest, each at most once \
                 (\"1m30s\", not \"30s1m\")"
            ));
        }
        last_unit = Some(index);
        let unit_ns = DURATION_UNITS[index].1;
        // Both parsed as at most 18 / 9 digits, so they fit in u64 and the products in u128.
        let int: u128 = int_digits
            .parse::<u64>()
            .map_err(|e| format!("invalid duration {text:?}: {e}"))?
            .into();
        let mut part = int * unit_ns;
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits
                .parse::<u64>()
                .map_err(|e| format!("invalid duration {text:?}: {e}"))?
                .into();
            let scale = 10u128.pow(u32::try_from(frac_digits.len()).unwrap_or(9));
            part += frac * unit_ns / scale;
        }
        total += part;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("duration {text:?} is too large"))?;
    // The remainder is below 1e9, so it fits in u32.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// Binary size units and their multipliers.
const SIZE_UNITS: [(&str, u64); 5] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
];

/// Parses a byte size written as a string: digits, optional spaces, then `B`, `KiB`, `MiB`,
/// `GiB` or `TiB` (or no unit: bytes). Decimal units (`KB`, `MB`) are refused because they are
/// ambiguous.
///
/// ```
/// use amp_supervisor::config::parse_size;
/// assert_eq!(parse_size("64KiB"), Ok(65536));
/// assert_eq!(parse_size("1 MiB"), Ok(1 << 20));
/// assert_eq!(parse_size("512"), Ok(512));
/// assert!(parse_size("1MB").is_err());
/// ```
///
/// # Errors
/// A message saying what is wrong with `text` and which units are accepted.
pub fn parse_size(text: &str) -> Result<u64, String> {
    const FORMS: &str =
        "write bytes as an integer or a string such as \"64KiB\", \"1MiB\" or \"2GiB\"";
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "invalid size {text:?}: expected a number first; {FORMS}"
        ));
    }
    let unit = rest.trim_start_matches(' ');
    let multiplier = if unit.is_empty() {
        1
    } else if let Some((_, m)) = SIZE_UNITS.iter().find(|(name, _)| *name == unit) {
        *m
    } else {
        let hint = match unit.to_ascii_lowercase().as_str() {
            "k" | "kb" | "kib" => " (did you mean \"KiB\"? sizes are binary)",
            "m" | "mb" | "mib" => " (did you mean \"MiB\"? sizes are binary)",
            "g" | "gb" | "gib" => " (did you mean \"GiB\"? sizes are binary)",
            _ => "",
        };
        return Err(format!(
            "invalid size {text:?}: unknown unit {unit:?}{hint}; {FORMS}"
        ));
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Parses a signal name: `"SIGTERM"` or `"TERM"`, in any letter case.
///
/// ```
/// use amp_supervisor::config::parse_signal;
/// use nix::sys::signal::Signal;
/// assert_eq!(parse_signal("TERM"), Ok(Signal::SIGTERM));
/// assert_eq!(parse_signal("sigint"), Ok(Signal::SIGINT));
/// assert!(parse_signal("SIGNOPE").is_err());
/// ```
///
/// # Errors
/// A message naming the accepted spellings and the known signals.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>().map_err(|_| {
        let known: Vec<&str> = Signal::iterator().map(Signal::as_str).collect();
        format!(
            "unknown signal {text:?}: write a signal name such as \"SIGTERM\" or \"TERM\" (known: {})",
            known.join(", ")
        )
    })
}

/// A duration in the config file (see [`parse_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration string with a unit, e.g. \"500ms\", \"2s\" or \"1m30s\" (bare numbers are not accepted)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                parse_duration(v).map(Dur).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A byte size in the config file: an integer (bytes) or a string (see [`parse_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "a size: an integer number of bytes or a string such as \"64KiB\" or \"1MiB\""
                )
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("size {v} is negative; sizes are >= 0")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(Size).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A signal name in the config file (see [`parse_signal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SignalName(pub Signal);

impl<'de> Deserialize<'de> for SignalName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = SignalName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a signal name such as \"SIGTERM\" or \"TERM\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SignalName, E> {
                parse_signal(v).map(SignalName).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(
            parse_duration("1h2m3s4ms5us"),
            Ok(Duration::new(3723, 4_005_000))
        );
        assert_eq!(parse_duration("0.25m"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "", "5", "5x", "s", "1.s", "30s1m", "1s1s", "1 s", "-1s", ".5s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be refused");
        }
        let e = parse_duration("500").unwrap_err();
        assert!(e.contains("has no unit") && e.contains("\"500ms\""), "{e}");
        assert!(parse_duration("99999999999999999h")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("3GiB"), Ok(3 << 30));
        assert_eq!(parse_size("7B"), Ok(7));
        assert!(parse_size("1KB")
            .unwrap_err()
            .contains("did you mean \"KiB\""));
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("99999999TiB").unwrap_err().contains("too large"));
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGHUP"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("usr1"), Ok(Signal::SIGUSR1));
        let e = parse_signal("TERMINATE").unwrap_err();
        assert!(
            e.contains("\"SIGTERM\" or \"TERM\"") && e.contains("SIGKILL"),
            "{e}"
        );
    }
}
