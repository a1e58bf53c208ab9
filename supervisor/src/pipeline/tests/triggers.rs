//! Timers (every, cron), completion, event and file triggers under injected time.

use super::config;
use crate::pipeline::cron::{days_from_civil, CronSchedule};
use crate::pipeline::triggers::{glob_match, Triggers};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A UTC date and time.
fn utc(y: i64, mo: u32, d: u32, h: u64, mi: u64, s: u64) -> SystemTime {
    let days = u64::try_from(days_from_civil(y, mo, d)).unwrap();
    UNIX_EPOCH + Duration::from_secs(days * 86_400 + h * 3600 + mi * 60 + s)
}

fn next(expr: &str, after: SystemTime) -> SystemTime {
    CronSchedule::parse(expr)
        .unwrap()
        .next_after(after)
        .unwrap_or_else(|| panic!("{expr} never fires after {after:?}"))
}

#[test]
fn cron_next_fire() {
    let t = utc(2024, 3, 15, 10, 17, 42); // a Friday
    assert_eq!(next("*/5 * * * * *", t), utc(2024, 3, 15, 10, 17, 45));
    assert_eq!(next("* * * * *", t), utc(2024, 3, 15, 10, 18, 0));
    assert_eq!(next("0 30 2 * * *", t), utc(2024, 3, 16, 2, 30, 0));
    // Weekdays at 09:30: Friday is past, so Monday.
    assert_eq!(next("30 9 * * MON-FRI", t), utc(2024, 3, 18, 9, 30, 0));
    assert_eq!(next("30 9 * * 1-5", t), utc(2024, 3, 18, 9, 30, 0));
    // Sunday as 0 and as 7.
    assert_eq!(next("0 0 * * 0", t), utc(2024, 3, 17, 0, 0, 0));
    assert_eq!(next("0 0 * * sun", t), utc(2024, 3, 17, 0, 0, 0));
    assert_eq!(next("0 0 * * 7", t), utc(2024, 3, 17, 0, 0, 0));
    // Lists, ranges with steps, month names.
    assert_eq!(next("0 0 1,15 * *", t), utc(2024, 4, 1, 0, 0, 0));
    assert_eq!(next("0 8-18/4 * * *", t), utc(2024, 3, 15, 12, 0, 0));
    assert_eq!(next("0 0 1 jan,jul *", t), utc(2024, 7, 1, 0, 0, 0));
    // 29 February: the next leap year.
    assert_eq!(next("0 0 29 2 *", t), utc(2028, 2, 29, 0, 0, 0));
    // Both day fields restricted: either matches (the 20th, or a Monday).
    assert_eq!(next("0 0 20 * MON", t), utc(2024, 3, 18, 0, 0, 0));
    // Only the weekday restricted (day of month `?`).
    assert_eq!(next("0 0 0 ? * WED", t), utc(2024, 3, 20, 0, 0, 0));
    // Macros; strictly after: a time on the schedule gives the next one.
    assert_eq!(next("@hourly", t), utc(2024, 3, 15, 11, 0, 0));
    assert_eq!(next("@daily", t), utc(2024, 3, 16, 0, 0, 0));
    assert_eq!(next("@weekly", t), utc(2024, 3, 17, 0, 0, 0));
    assert_eq!(next("@monthly", t), utc(2024, 4, 1, 0, 0, 0));
    assert_eq!(next("@yearly", t), utc(2025, 1, 1, 0, 0, 0));
    assert_eq!(
        next("*/5 * * * * *", utc(2024, 3, 15, 10, 17, 45)),
        utc(2024, 3, 15, 10, 17, 50)
    );
    // Year end rollover.
    assert_eq!(
        next("59 23 31 12 *", utc(2024, 12, 31, 23, 59, 0)),
        utc(2025, 12, 31, 23, 59, 0)
    );
    // Sub-second instants.
    assert_eq!(
        next(
            "* * * * * *",
            utc(2024, 1, 1, 0, 0, 0) + Duration::from_millis(500)
        ),
        utc(2024, 1, 1, 0, 0, 1)
    );
}

#[test]
fn cron_errors() {
    for (expr, want) in [
        ("* * * *", "has 4 fields"),
        ("60 * * * *", "invalid minute \"60\""),
        ("* 24 * * *", "invalid hour \"24\""),
        ("* * 0 * *", "invalid day of month \"0\""),
        ("* * * 13 *", "invalid month \"13\""),
        ("* * * * 8", "invalid day of week \"8\""),
        ("* * * * funday", "invalid day of week \"funday\""),
        ("*/0 * * * *", "invalid minute step \"0\""),
        ("5-1 * * * *", "the start is after the end"),
        ("0 0 30 2 *", "never fires"),
        ("@often", "unknown cron macro"),
        ("? * * * *", "invalid minute \"?\""),
    ] {
        let e = CronSchedule::parse(expr).unwrap_err();
        assert!(e.contains(want), "{expr}: {e}");
    }
}

const TRIGGERS: &str = r#"
[[trigger]]
name = "tick"
every = "5s"
submit = { kind = "t", payload = "tick" }

[[trigger]]
name = "cron"
cron = "0 * * * * *"
submit = { kind = "t", priority = "interactive" }

[[trigger]]
name = "after-a"
on_complete = "a"
submit = { kind = "t" }

[[trigger]]
name = "a-failed"
on_complete = "a"
on_failure = true
submit = { kind = "t", payload = "alert" }

[[trigger]]
name = "deploy"
on_event = "deployed"
submit = { kind = "t" }

[[trigger]]
name = "deploy-2"
on_event = "deployed"
submit = { kind = "a", payload = "fixed" }

[[trigger]]
name = "inbox"
on_file = { dir = "/srv/in", pattern = "*.json" }
submit = { kind = "t" }
"#;

fn setup() -> (Triggers, Instant, SystemTime) {
    let c = config(&["a", "t"], TRIGGERS);
    let (t0, w0) = (Instant::now(), utc(2024, 3, 15, 10, 0, 30));
    (Triggers::new(&c, t0, w0), t0, w0)
}

#[test]
fn every_fires_on_schedule_without_bursts() {
    let (mut tr, t0, w0) = setup();
    let s = Duration::from_secs;
    let t_kind = 1; // kinds: a, t
    assert_eq!(
        tr.next_wakeup(t0, w0),
        Some(t0 + s(5)),
        "every fires before the cron"
    );
    assert!(tr.due(t0 + Duration::from_millis(4999), w0).is_empty());
    let fires = tr.due(t0 + s(5), w0);
    assert_eq!(fires.len(), 1);
    assert_eq!(
        (fires[0].trigger, fires[0].kind, fires[0].class),
        (0, t_kind, 1)
    );
    assert_eq!(fires[0].payload, b"tick");
    assert!(tr.due(t0 + s(5), w0).is_empty(), "once per period");
    assert_eq!(tr.next_wakeup(t0 + s(5), w0), Some(t0 + s(10)));
    // 22 s late: fires once, the next one a period after now.
    assert_eq!(tr.due(t0 + s(32), w0).len(), 1);
    assert_eq!(tr.next_wakeup(t0 + s(32), w0), Some(t0 + s(37)));
    // Slightly late: the schedule keeps its phase.
    assert_eq!(tr.due(t0 + s(38), w0).len(), 1);
    assert_eq!(tr.next_wakeup(t0 + s(38), w0), Some(t0 + s(42)));
    assert_eq!(tr.infos()[0].fired, 3);
    assert_eq!(tr.infos()[0].when, "every 5s");
}

#[test]
fn cron_fires_on_wall_time() {
    let c = config(
        &["t"],
        "[[trigger]]\nname = \"cron\"\ncron = \"0 * * * * *\"\nsubmit = { kind = \"t\", priority = \"interactive\" }\n",
    );
    let (t0, w0) = (Instant::now(), utc(2024, 3, 15, 10, 0, 30));
    let mut tr = Triggers::new(&c, t0, w0);
    let s = Duration::from_secs;
    // `now` does not matter to cron: only the wall clock.
    let later = |d: u64| (t0 + s(1), w0 + s(d));
    let (now, wall) = later(29);
    assert!(tr.due(now, wall).is_empty(), "10:00:59");
    assert_eq!(
        tr.next_wakeup(now, wall),
        Some(now + s(1)),
        "the minute starts in 1 s"
    );
    let (now, wall) = later(30);
    let fires = tr.due(now, wall);
    assert_eq!(fires.iter().map(|f| f.trigger).collect::<Vec<_>>(), [0]);
    assert_eq!(fires[0].class, 0, "priority = interactive");
    assert!(
        fires[0].payload.is_empty(),
        "timers default to an empty payload"
    );
    // Three minutes missed: fires once, next at the coming minute.
    let (now, wall) = later(30 + 185);
    assert_eq!(tr.due(now, wall).len(), 1);
    assert_eq!(tr.next_wakeup(now, wall), Some(now + s(55)));
    // The clock is set back an hour: the next fire is recomputed from the new time.
    let back = w0 - s(3600);
    assert!(tr.due(now, back).is_empty());
    assert_eq!(tr.next_wakeup(now, back), Some(now + s(30)));
    assert_eq!(tr.infos()[0].fired, 2);
    assert_eq!(tr.infos()[0].when, "cron 0 * * * * *");
}

#[test]
fn completion_triggers_match_kind_and_outcome() {
    let (mut tr, _, _) = setup();
    let (a, t) = (0, 1);
    assert!(tr.watches(a) && !tr.watches(t));
    let f = tr.completed(a, true, b"result");
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].trigger, f[0].payload.as_slice()), (2, &b"result"[..]));
    let f = tr.completed(a, false, b"boom");
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].trigger, f[0].payload.as_slice()), (3, &b"alert"[..]));
    assert!(tr.completed(t, true, b"x").is_empty());
    for _ in 0..10 {
        tr.completed(a, true, b"r");
    }
    let fired: Vec<u64> = tr.infos().iter().map(|i| i.fired).collect();
    assert_eq!(fired, [0, 0, 11, 1, 0, 0, 0]);
    assert_eq!(tr.infos()[3].when, "on_complete a (failures)");
}

#[test]
fn event_triggers_fire_every_listener() {
    let (mut tr, _, _) = setup();
    let f = tr.event("deployed", Some(b"v1.2"));
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].trigger, f[0].payload.as_slice()), (4, &b"v1.2"[..]));
    assert_eq!(
        (f[1].trigger, f[1].kind, f[1].payload.as_slice()),
        (5, 0, &b"fixed"[..])
    );
    assert!(tr.event("other", None).is_empty());
    assert!(tr.event("deployed", None)[0].payload.is_empty());
    assert_eq!(tr.infos()[4].fired, 2);
}

#[test]
fn file_triggers_fire_once_per_new_file() {
    let (mut tr, _, _) = setup();
    let watches = tr.file_watches();
    assert_eq!(watches.len(), 1);
    let (i, dir, pattern) = watches[0];
    assert_eq!((i, dir.to_str(), pattern), (6, Some("/srv/in"), "*.json"));
    let f = tr.files(i, ["a.json", "b.txt", "c.json"]);
    let paths: Vec<&[u8]> = f.iter().map(|f| f.payload.as_slice()).collect();
    assert_eq!(paths, [&b"/srv/in/a.json"[..], &b"/srv/in/c.json"[..]]);
    assert!(tr.files(i, ["a.json", "c.json"]).is_empty(), "already seen");
    assert_eq!(tr.files(i, ["c.json", "d.json"]).len(), 1);
    // a.json left and came back: fires again.
    assert_eq!(tr.files(i, ["a.json", "c.json", "d.json"]).len(), 1);
    assert!(tr.files(0, ["x.json"]).is_empty(), "not a file trigger");
}

#[test]
fn globs() {
    for (p, n, want) in [
        ("*", "anything", true),
        ("*.json", ".json", true),
        ("*.json", "a.json.tmp", false),
        ("a*b*c", "aXXbYYc", true),
        ("a*b*c", "aXXbYY", false),
        ("?", "", false),
        ("report-??.csv", "report-07.csv", true),
        ("report-??.csv", "report-7.csv", false),
        ("**x", "abx", true),
        ("é*", "éa", true),
    ] {
        assert_eq!(glob_match(p, n), want, "{p} vs {n}");
    }
}
