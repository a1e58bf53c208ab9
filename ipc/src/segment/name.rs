//! Segment names: `/{prefix}-{creator_pid}-{16 lowercase hex digits}`.
//!
//! The random part comes from `rand::random` (the thread-local, OS-seeded CSPRNG), so another
//! process cannot guess a name before the creator hands it over. The creator's PID in the name lets
//! [`sweep`](super::sweep) find segments whose creator died without reading them.

use super::SegmentError;

/// Longest accepted prefix, in bytes. Keeps the full name (`/` + prefix + `-` + up to 10 PID
/// digits + `-` + 16 hex digits) far below the 255-byte `NAME_MAX` of `/dev/shm`.
pub const MAX_PREFIX_LEN: usize = 64;

/// Longest name `shm_open` accepts after the leading `/` (`NAME_MAX` on Linux).
const NAME_MAX: usize = 255;

/// Number of hex digits in the random part of a name.
const RANDOM_HEX_DIGITS: usize = 16;

/// Checks a name prefix: 1..=[`MAX_PREFIX_LEN`] bytes from `[A-Za-z0-9_.-]`.
pub(super) fn check_prefix(prefix: &str) -> Result<(), SegmentError> {
    let reason = if prefix.is_empty() {
        Some("it is empty")
    } else if prefix.len() > MAX_PREFIX_LEN {
        Some("it is too long")
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        Some("it contains a character other than letters, digits, '_', '.' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SegmentError::BadPrefix {
            prefix: prefix.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// A fresh, unpredictable name for a segment created by `pid` (the prefix must be checked).
pub(super) fn generate(prefix: &str, pid: u32) -> String {
    let random: u64 = rand::random();
    format!("/{prefix}-{pid}-{random:016x}")
}

/// Checks that `name` is a POSIX shared-memory name `shm_open` will treat portably: a leading `/`,
/// then 1..=255 bytes with no further `/` and no NUL, and not `.` or `..`.
pub(super) fn check_name(name: &str) -> Result<(), SegmentError> {
    let reason = match name.strip_prefix('/') {
        None => Some("it does not start with '/'"),
        Some("") => Some("it has nothing after the '/'"),
        Some("." | "..") => Some("it names a directory"),
        Some(rest) if rest.len() > NAME_MAX => Some("it is longer than 255 bytes after the '/'"),
        Some(rest) if rest.contains('/') => Some("it contains a '/' after the first character"),
        Some(rest) if rest.contains('\0') => Some("it contains a NUL byte"),
        Some(_) => None,
    };
    match reason {
        Some(reason) => Err(SegmentError::BadName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// The creator PID carried by a directory entry `file_name` (no leading `/`) if it is exactly
/// `{prefix}-{pid}-{16 lowercase hex digits}` with a PID in `1..=i32::MAX` written without leading
/// zeros; `None` for anything else, so a sweep never touches an entry it did not name.
pub(super) fn creator_pid_of(prefix: &str, file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix(prefix)?.strip_prefix('-')?;
    let (pid, random) = rest.split_once('-')?;
    let pid_ok = !pid.is_empty()
        && pid.len() <= 10
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !pid.starts_with('0');
    let random_ok = random.len() == RANDOM_HEX_DIGITS
        && random
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !pid_ok || !random_ok {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    (i32::try_from(pid).is_ok()).then_some(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_parse_back_and_differ() {
        let a = generate("amp", 1234);
        let b = generate("amp", 1234);
        assert_ne!(a, b, "two generated names must differ");
        assert!(check_name(&a).is_ok());
        assert_eq!(creator_pid_of("amp", &a[1..]), Some(1234));
        assert_eq!(a.len(), "/amp-1234-".len() + RANDOM_HEX_DIGITS);
    }

    #[test]
    fn prefixes_are_checked() {
        for good in ["amp", "amp-test-1-2", "a.b_c", &"x".repeat(MAX_PREFIX_LEN)] {
            assert!(check_prefix(good).is_ok(), "{good:?} refused");
        }
        for bad in [
            "",
            "a/b",
            "a b",
            "ä",
            "a\0",
            &"x".repeat(MAX_PREFIX_LEN + 1),
        ] {
            let e = check_prefix(bad).unwrap_err();
            assert!(matches!(e, SegmentError::BadPrefix { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("/amp-1-0123456789abcdef").is_ok());
        for bad in [
            "",
            "amp",
            "/",
            "/.",
            "/..",
            "/a/b",
            "/a\0b",
            &format!("/{}", "x".repeat(256)),
        ] {
            let e = check_name(bad).unwrap_err();
            assert!(matches!(e, SegmentError::BadName { .. }), "{bad:?}: {e}");
        }
    }

    #[test]
    fn sweep_parser_accepts_only_the_exact_shape() {
        let hex = "0123456789abcdef";
        assert_eq!(creator_pid_of("amp", &format!("amp-42-{hex}")), Some(42));
        for other in [
            format!("amp-42-{hex}x"),
            format!("amp-42-{}", &hex[1..]),
            "amp-42-0123456789ABCDEF".to_owned(),
            format!("amp-042-{hex}"),
            format!("amp-0-{hex}"),
            format!("amp--{hex}"),
            format!("amp-4294967295-{hex}"),
            format!("amp-x42-{hex}"),
            format!("ampx-42-{hex}"),
            format!("amp-test-42-{hex}"),
            format!("other-42-{hex}"),
        ] {
            assert_eq!(creator_pid_of("amp", &other), None, "{other:?} accepted");
        }
        // A longer prefix that starts with the swept one is not swept along with it.
        assert_eq!(
            creator_pid_of("amp-test-1", &format!("amp-test-12-42-{hex}")),
            None
        );
    }
}
