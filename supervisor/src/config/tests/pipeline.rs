//! The pipeline keys: `[kinds.NAME]` loops / determinism / cache / fan-in, `[[route]]`,
//! `[[trigger]]` — defaults, every key, and every error at its `line:column`.

use super::{fail, lines, ok};
use crate::config::*;
use std::path::PathBuf;
use std::time::Duration;

/// Three workers serving `a`, `b`, `c` and `d`.
const WORKERS: &str = "[workers.w]\ncommand = \"x\"\nkinds = [\"a\", \"b\", \"c\", \"d\"]\n";

fn with_workers(text: &str) -> String {
    format!("{WORKERS}{text}")
}

#[test]
fn pipeline_defaults() {
    let c = ok(WORKERS);
    assert_eq!(
        c.pipeline.kinds.keys().collect::<Vec<_>>(),
        ["a", "b", "c", "d"]
    );
    let a = c.pipeline.kind("a");
    assert_eq!(a, &KindFlow::default());
    assert_eq!(a.max_loops, DEFAULT_KIND_MAX_LOOPS);
    assert_eq!(
        (a.refine_kind.as_ref(), a.min_improvement, a.deterministic),
        (None, None, false)
    );
    assert_eq!(a.cache, None);
    assert_eq!(a.fan_in, FanIn::All);
    assert_eq!(a.child_failure, FailurePolicy::FailParent);
    assert!(c.pipeline.routes.is_empty() && c.pipeline.triggers.is_empty());
    // An unknown name gets the defaults too.
    assert_eq!(c.pipeline.kind("zzz"), &KindFlow::default());
}

#[test]
fn pipeline_kind_keys() {
    let c = ok(&with_workers(
        r#"
[kinds.a]
max_loops = 3
refine_kind = "b"
min_improvement = 0.01
fan_in = { at_least = 2 }
child_failure = "continue"

[kinds.b]
deterministic = true
fan_in = "any"

[kinds.c]
deterministic = true
cache = { max_bytes = "1MiB", ttl = "30s", disk_dir = "cache/c", disk_max_bytes = "8MiB" }
fan_in = "all"
"#,
    ));
    let a = c.pipeline.kind("a");
    assert_eq!(a.max_loops, 3);
    assert_eq!(a.refine_kind.as_deref(), Some("b"));
    assert_eq!(a.min_improvement, Some(0.01));
    assert_eq!(a.fan_in, FanIn::AtLeast(2));
    assert_eq!(a.child_failure, FailurePolicy::Continue);
    assert!(!a.deterministic && a.cache.is_none());
    let b = c.pipeline.kind("b");
    assert!(b.deterministic);
    assert_eq!(
        b.cache,
        Some(CacheConfig::default()),
        "deterministic gets the default cache"
    );
    assert_eq!(
        b.cache.as_ref().map(|c| (c.max_bytes, c.ttl)),
        Some((64 << 20, Duration::from_secs(600)))
    );
    assert_eq!(b.fan_in, FanIn::Any);
    let cc = c.pipeline.kind("c").cache.clone().unwrap();
    assert_eq!(cc.max_bytes, 1 << 20);
    assert_eq!(cc.ttl, Duration::from_secs(30));
    assert_eq!(
        cc.disk,
        Some(DiskCacheConfig {
            dir: PathBuf::from("cache/c"),
            max_bytes: 8 << 20
        }),
        "relative to the directory of amp.toml (here: none)"
    );
    let c = ok(&with_workers(
        "[kinds.a]\ndeterministic = true\ncache = { disk_dir = \"/var/cache/amp\" }\n",
    ));
    let disk = c.pipeline.kind("a").cache.clone().unwrap().disk.unwrap();
    assert_eq!(disk.max_bytes, DEFAULT_DISK_CACHE_MAX_BYTES);
    // max_loops = 0 is allowed: no loopback is followed.
    let c = ok(&with_workers("[kinds.d]\nmax_loops = 0\n"));
    assert_eq!(c.pipeline.kind("d").max_loops, 0);
}

#[test]
fn pipeline_kind_key_errors() {
    let e = fail(&with_workers(
        r#"[kinds.a]
max_loops = 10001
refine_kind = "a"
min_improvement = -0.5
cache = { ttl = "1m" }
fan_in = { at_least = 0 }
[kinds.b]
refine_kind = "zz"
deterministic = true
cache = { ttl = "0s", disk_max_bytes = "1MiB" }
[kinds.c]
deterministic = true
cache = { disk_dir = "", disk_max_bytes = 100 }
"#,
    ));
    let want = [
        "amp.toml:5:13: kinds.a.max_loops: 10001 is outside 0..=10000",
        "amp.toml:6:15: kinds.a.refine_kind: \"a\" is this kind itself: a loopback re-enters its own kind by default, so remove refine_kind",
        "amp.toml:7:19: kinds.a.min_improvement: -0.5 must be a finite number >= 0 (the least score gain that keeps a loop going)",
        "amp.toml:8:9: kinds.a.cache: a cache is only for deterministic kinds: add `deterministic = true` or remove `cache`",
        "amp.toml:9:10: kinds.a.fan_in.at_least: 0 is outside 1..=65536",
        "amp.toml:11:15: kinds.b.refine_kind: no worker serves kind \"zz\" (served: a, b, c, d); add it to a worker's `kinds`",
        "amp.toml:13:17: kinds.b.cache.ttl: must be longer than zero, e.g. \"500ms\" or \"5s\"",
        "amp.toml:13:40: kinds.b.cache.disk_max_bytes: `disk_max_bytes` needs `disk_dir`: set disk_dir or remove disk_max_bytes",
        "amp.toml:16:22: kinds.c.cache.disk_dir: is empty: give a directory or remove the key",
        "amp.toml:16:43: kinds.c.cache.disk_max_bytes: 100 bytes is too small: at least \"4KiB\"",
    ];
    assert_eq!(lines(&e), want);
}

#[test]
fn pipeline_kind_schema_errors() {
    let e = fail(&with_workers("[kinds.a]\nfan_in = \"most\"\n"));
    assert!(matches!(e, ConfigError::Schema(_)));
    assert!(
        e.to_string().starts_with(
            "amp.toml:5:10: kinds.a.fan_in: unknown variant `most`, expected one of `all`, `any`"
        ),
        "{e}"
    );
    let e = fail(&with_workers("[kinds.a]\nfan_in = { at_most = 2 }\n"));
    assert!(
        e.to_string().starts_with(
            "amp.toml:5:10: kinds.a.fan_in: unknown field `at_most`, expected `at_least`"
        ),
        "{e}"
    );
    let e = fail(&with_workers("[kinds.a]\nchild_failure = \"ignore\"\n"));
    assert!(
        e.to_string().starts_with(
            "amp.toml:5:17: kinds.a.child_failure: unknown variant `ignore`, expected `fail_parent` or `continue`"
        ),
        "{e}"
    );
    let e = fail(&with_workers(
        "[kinds.a]\ndeterministic = true\ncache = { max_bytes = \"1MB\" }\n",
    ));
    assert!(
        e.to_string().starts_with(
            "amp.toml:6:23: kinds.a.cache.max_bytes: invalid size \"1MB\": unknown unit \"MB\""
        ),
        "{e}"
    );
    let e = fail(&with_workers(
        "[kinds.a]\ndeterministic = true\ncache = { size = 1 }\n",
    ));
    assert!(
        e.to_string()
            .starts_with("amp.toml:6:11: kinds.a.cache.size: unknown field `size`"),
        "{e}"
    );
    let e = fail(&with_workers("[kinds.a]\nmax_loop = 3\n"));
    assert!(
        e.to_string()
            .starts_with("amp.toml:5:1: kinds.a.max_loop: unknown field `max_loop`"),
        "{e}"
    );
    assert!(e.to_string().contains("`max_loops`"), "{e}");
}

#[test]
fn routes_parse() {
    let c = ok(&with_workers(
        r#"
[[route]]
from = "a"
to = "b"

[[route]]
from = "b"
to = "c"
on = "err"
on_failure = "continue"

[[route]]
from = "a"
to = "d"
on = "tag:big"
"#,
    ));
    assert_eq!(
        c.pipeline.routes,
        [
            RouteConfig {
                from: "a".into(),
                to: "b".into(),
                on: RouteOn::Ok,
                on_failure: FailurePolicy::FailParent
            },
            RouteConfig {
                from: "b".into(),
                to: "c".into(),
                on: RouteOn::Err,
                on_failure: FailurePolicy::Continue
            },
            RouteConfig {
                from: "a".into(),
                to: "d".into(),
                on: RouteOn::Tag("big".into()),
                on_failure: FailurePolicy::FailParent
            },
        ]
    );
    assert_eq!(c.pipeline.routes[2].on.to_string(), "tag:big");
}

#[test]
fn route_errors() {
    let e = fail(&with_workers(
        r#"[[route]]
from = "a"
to = "zz"
[[route]]
from = "a"
to = "a"
[[route]]
from = "a"
to = "b"
on = "done"
[[route]]
from = "a"
to = "b"
on = "tag:Big"
[[route]]
from = "c"
to = "d"
[[route]]
from = "c"
to = "d"
on = "ok"
"#,
    ));
    let want = [
        "amp.toml:6:6: route[0].to: no worker serves kind \"zz\" (served: a, b, c, d); add it to a worker's `kinds`",
        "amp.toml:9:6: route[1].to: a route cannot lead from kind \"a\" back to itself: use a loopback (max_loops, refine_kind) for loops",
        "amp.toml:13:6: route[2].on: \"done\" is not an outcome: write \"ok\", \"err\" or \"tag:NAME\"",
        "amp.toml:17:6: route[3].on: invalid tag name \"Big\": use 1 to 64 characters from a-z, 0-9, '_' and '-'",
        "amp.toml:23:6: route[5].to: route c -> d on ok is declared twice",
    ];
    assert_eq!(lines(&e), want);
    let e = fail(&with_workers("[[route]]\nfrom = \"a\"\n"));
    assert_eq!(e.to_string(), "amp.toml:4:1: route: missing field `to`");
    let e = fail(&with_workers(
        "[[route]]\nfrom = \"a\"\nto = \"b\"\non_failure = \"retry\"\n",
    ));
    assert!(
        e.to_string()
            .starts_with("amp.toml:7:14: route[0].on_failure: unknown variant `retry`"),
        "{e}"
    );
}

#[test]
fn route_cycles_are_refused() {
    let e = fail(&with_workers(
        "[[route]]\nfrom = \"a\"\nto = \"b\"\n[[route]]\nfrom = \"b\"\nto = \"c\"\non = \"err\"\n\
         [[route]]\nfrom = \"c\"\nto = \"a\"\non = \"tag:again\"\n",
    ));
    assert_eq!(
        lines(&e),
        ["amp.toml:5:8: route[0].from: route cycle: a -> b -> c -> a: routes may not form a loop; use a loopback (max_loops, refine_kind) for feedback loops"]
    );
}

#[test]
fn triggers_parse() {
    let c = ok(&with_workers(
        r#"
[[trigger]]
name = "tick"
every = "5s"
submit = { kind = "a", payload = "ping" }

[[trigger]]
name = "nightly"
cron = "0 30 2 * * *"
submit = { kind = "b", priority = "interactive" }

[[trigger]]
name = "after-a"
on_complete = "a"
submit = { kind = "c" }

[[trigger]]
name = "a-failed"
on_complete = "a"
on_failure = true
submit = { kind = "d", payload = "alert" }

[[trigger]]
name = "deploy"
on_event = "deployed"
submit = { kind = "b" }

[[trigger]]
name = "inbox"
on_file = { dir = "/srv/inbox", pattern = "*.json" }
submit = { kind = "c" }

[[trigger]]
name = "any-file"
on_file = { dir = "drop" }
submit = { kind = "c" }
"#,
    ));
    let t = &c.pipeline.triggers;
    assert_eq!(t.len(), 7);
    assert_eq!(t[0].name, "tick");
    assert_eq!(t[0].when, TriggerWhen::Every(Duration::from_secs(5)));
    assert_eq!(
        t[0].submit,
        TriggerSubmit {
            kind: "a".into(),
            payload: Some(b"ping".to_vec()),
            class: 1
        },
        "the default priority is the last class (batch)"
    );
    let TriggerWhen::Cron(s) = &t[1].when else {
        panic!("{:?}", t[1].when)
    };
    assert_eq!(s.as_str(), "0 30 2 * * *");
    assert_eq!(t[1].submit.class, 0);
    assert_eq!(t[1].submit.payload, None);
    assert_eq!(
        t[2].when,
        TriggerWhen::Complete {
            kind: "a".into(),
            on_failure: false
        }
    );
    assert_eq!(
        t[3].when,
        TriggerWhen::Complete {
            kind: "a".into(),
            on_failure: true
        }
    );
    assert_eq!(t[4].when, TriggerWhen::Event("deployed".into()));
    assert_eq!(
        t[5].when,
        TriggerWhen::File {
            dir: "/srv/inbox".into(),
            pattern: "*.json".into()
        }
    );
    assert_eq!(
        t[6].when,
        TriggerWhen::File {
            dir: "drop".into(),
            pattern: "*".into()
        }
    );
}

#[test]
fn trigger_errors() {
    let e = fail(&with_workers(
        r#"[[trigger]]
name = "t"
submit = { kind = "a" }
[[trigger]]
name = "t"
every = "0s"
cron = "* * * * *"
submit = { kind = "zz", priority = "urgent" }
[[trigger]]
name = "c"
cron = "61 * * * *"
on_failure = true
submit = { kind = "a" }
[[trigger]]
name = "d"
cron = "0 0 31 2 *"
submit = { kind = "a" }
[[trigger]]
name = "Ev"
on_event = "Deploy!"
submit = { kind = "a" }
[[trigger]]
name = "f"
on_file = { dir = "", pattern = "a/*.json" }
submit = { kind = "a" }
"#,
    ));
    let want = [
        "amp.toml:4:1: trigger[0]: says nothing about when it fires: give one of every, cron, on_complete, on_event or on_file",
        "amp.toml:8:8: trigger[1].name: trigger \"t\" is declared twice",
        "amp.toml:9:9: trigger[1].every: must be longer than zero, e.g. \"500ms\" or \"5s\"",
        "amp.toml:10:8: trigger[1].cron: a trigger fires on one thing: it already has `every`, so remove `cron` (or split it into two triggers)",
        "amp.toml:11:19: trigger[1].submit.kind: no worker serves kind \"zz\" (served: a, b, c, d); add it to a worker's `kinds`",
        "amp.toml:11:36: trigger[1].submit.priority: unknown class \"urgent\" (classes: interactive, batch)",
        "amp.toml:14:8: trigger[2].cron: invalid minute \"61\" in \"61\": expected 0..=59, `*`, a range `A-B` or a step `*/S`",
        "amp.toml:15:14: trigger[2].on_failure: `on_failure` only goes with `on_complete`",
        "amp.toml:19:8: trigger[3].cron: cron expression \"0 0 31 2 *\" never fires (no such date): check the day and month fields",
        "amp.toml:22:8: trigger[4].name: invalid trigger name \"Ev\": use 1 to 64 characters from a-z, 0-9, '_' and '-'",
        "amp.toml:23:12: trigger[4].on_event: invalid event name \"Deploy!\": use 1 to 64 characters from a-z, 0-9, '_' and '-'",
        "amp.toml:27:19: trigger[5].on_file.dir: is empty: give the directory to watch",
        "amp.toml:27:33: trigger[5].on_file.pattern: invalid pattern \"a/*.json\": a file-name glob such as \"*.json\" (no '/')",
    ];
    let got = lines(&e);
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "line {i} differs");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
    let e = fail(&with_workers("[[trigger]]\nname = \"t\"\nevery = \"1s\"\n"));
    assert_eq!(
        e.to_string(),
        "amp.toml:4:1: trigger: missing field `submit`"
    );
    let e = fail(&with_workers(
        "[[trigger]]\nname = \"t\"\nevery = \"1s\"\nsubmit = { kind = \"a\", class = \"batch\" }\n",
    ));
    assert!(
        e.to_string()
            .starts_with("amp.toml:7:24: trigger[0].submit.class: unknown field `class`"),
        "{e}"
    );
    let e = fail(&with_workers(
        "[[trigger]]\nname = \"t\"\nevery = 5\nsubmit = { kind = \"a\" }\n",
    ));
    assert!(
        e.to_string().starts_with(
            "amp.toml:6:9: trigger[0].every: invalid type: integer `5`, expected a duration string"
        ),
        "{e}"
    );
}

#[test]
fn completion_triggers_may_not_loop() {
    let e = fail(&with_workers(
        "[[trigger]]\nname = \"self\"\non_complete = \"a\"\nsubmit = { kind = \"a\" }\n",
    ));
    assert_eq!(
        lines(&e),
        ["amp.toml:6:15: trigger[0].on_complete: trigger \"self\" would fire itself again (a -> a), forever: completion triggers and routes may not form a loop"]
    );
    // b -> c by route, c completing submits b.
    let e = fail(&with_workers(
        "[[route]]\nfrom = \"b\"\nto = \"c\"\n\
         [[trigger]]\nname = \"again\"\non_complete = \"c\"\nsubmit = { kind = \"b\" }\n",
    ));
    assert_eq!(
        lines(&e),
        ["amp.toml:9:15: trigger[0].on_complete: trigger \"again\" would fire itself again (b -> c -> b), forever: completion triggers and routes may not form a loop"]
    );
    // A failure trigger into a chain that does not come back is fine.
    ok(&with_workers(
        "[[route]]\nfrom = \"b\"\nto = \"c\"\n\
         [[trigger]]\nname = \"t\"\non_complete = \"a\"\non_failure = true\nsubmit = { kind = \"b\" }\n",
    ));
}
