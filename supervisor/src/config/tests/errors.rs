//! Each error class, with its exact `line:column`.

use super::{fail, lines};
use crate::config::ConfigError;

#[test]
fn bad_toml_syntax() {
    let e = fail("[workers.a]\ncommand = 'amp-echo\n");
    assert!(matches!(e, ConfigError::Syntax(_)), "{e:?}");
    let d = &e.diagnostics()[0];
    assert_eq!((d.line, d.column), (2, 20), "{e}");
    assert!(
        e.to_string().starts_with("amp.toml:2:20: invalid TOML: "),
        "{e}"
    );
}

#[test]
fn zero_peak_ewma_decay() {
    let e = fail(
        "[workers.a]\ncommand = \"amp-echo\"\nkinds = [\"k\"]\n[kinds.k]\npeak_ewma_decay = \"0s\"\n",
    );
    assert_eq!(
        lines(&e),
        ["amp.toml:5:19: kinds.k.peak_ewma_decay: must be longer than zero, e.g. \"500ms\" or \"5s\""]
    );
}

#[test]
fn unknown_key() {
    let e = fail("[workers.a]\ncommand = \"amp-echo\"\n  replica = 2\n");
    assert!(matches!(e, ConfigError::Schema(_)), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(
            "amp.toml:3:3: workers.a.replica: unknown field `replica`, expected one of `command`,"
        ),
        "{text}"
    );
    assert!(
        text.contains("`replicas`"),
        "the message lists the known keys: {text}"
    );
}

#[test]
fn unknown_key_in_inline_table_and_top_level() {
    let e =
        fail("[workers.a]\ncommand = \"x\"\nbackoff = { initial = \"1s\", maximum = \"2s\" }\n");
    assert!(
        e.to_string()
            .starts_with("amp.toml:3:29: workers.a.backoff.maximum: unknown field `maximum`"),
        "{e}"
    );
    let e = fail("[supervisor]\n[worker.a]\ncommand = \"x\"\n");
    assert!(
        e.to_string()
            .starts_with("amp.toml:2:2: worker: unknown field `worker`, expected one of"),
        "{e}"
    );
}

#[test]
fn wrong_type() {
    let e = fail("[workers.a]\ncommand = \"x\"\nreplicas = \"two\"\n");
    assert!(matches!(e, ConfigError::Schema(_)));
    assert_eq!(
        e.to_string(),
        "amp.toml:3:12: workers.a.replicas: invalid type: string \"two\", expected u32"
    );
}

#[test]
fn missing_command() {
    let e = fail("[workers.a]\nargs = []\n");
    assert_eq!(
        e.to_string(),
        "amp.toml:1:1: workers.a: missing field `command`"
    );
}

#[test]
fn wrong_depends_on_shape() {
    let e = fail("[workers.a]\ncommand = \"x\"\ndepends_on = 3\n");
    let text = e.to_string();
    assert!(
        text.starts_with(
            "amp.toml:3:14: workers.a.depends_on: invalid type: integer `3`, expected a list"
        ),
        "{text}"
    );
    let e = fail("[workers.a]\ncommand = \"x\"\ndepends_on = { b = \"up\" }\n");
    let text = e.to_string();
    assert!(
        text.starts_with("amp.toml:3:20: workers.a.depends_on.b: unknown variant `up`"),
        "{text}"
    );
    assert!(text.contains("`completed_successfully`"), "{text}");
}

#[test]
fn unknown_dependency() {
    let e = fail(
        "[workers.echo]\ncommand = \"amp-echo\"\n\n[workers.hash]\ncommand = \"amp-hash\"\n\
         depends_on = [\"echo\", \"hsah\"]\n\n[workers.sleep]\ncommand = \"amp-sleep\"\n",
    );
    assert!(matches!(e, ConfigError::Invalid(_)));
    assert_eq!(
        e.to_string(),
        "amp.toml:6:23: workers.hash.depends_on: unknown worker \"hsah\" (known: echo, hash, sleep)"
    );
}

#[test]
fn cycle_printed_as_path() {
    let e = fail(
        "[workers.a]\ncommand = \"x\"\ndepends_on = [\"b\"]\n\
         [workers.b]\ncommand = \"x\"\ndepends_on = { c = \"started\" }\n\
         [workers.c]\ncommand = \"x\"\ndepends_on = [\"a\"]\n\
         [workers.d]\ncommand = \"x\"\ndepends_on = [\"a\"]\n",
    );
    assert_eq!(
        lines(&e),
        ["amp.toml:3:15: workers.a.depends_on: dependency cycle: a -> b -> c -> a"]
    );
}

#[test]
fn self_dependency() {
    let e = fail("[workers.a]\ncommand = \"x\"\ndepends_on = { a = \"ready\" }\n");
    assert_eq!(
        e.to_string(),
        "amp.toml:3:16: workers.a.depends_on: worker \"a\" cannot depend on itself"
    );
}

#[test]
fn bad_duration() {
    let e = fail("[workers.a]\ncommand = \"x\"\nready_timeout = \"5\"\n");
    let text = e.to_string();
    assert!(matches!(e, ConfigError::Schema(_)));
    assert!(text.starts_with("amp.toml:3:17: workers.a.ready_timeout: invalid duration \"5\": the number \"5\" has no unit"), "{text}");
    assert!(text.contains("\"1m30s\""), "{text}");

    let e = fail("[supervisor]\nstop_timeout = 500\n[workers.a]\ncommand = \"x\"\n");
    assert_eq!(
        e.to_string(),
        "amp.toml:2:16: supervisor.stop_timeout: invalid type: integer `500`, expected a duration string with a \
         unit, e.g. \"500ms\", \"2s\" or \"1m30s\" (bare numbers are not accepted)"
    );
}

#[test]
fn bad_signal_name() {
    let e = fail("[workers.a]\ncommand = \"x\"\nstop_signal = \"SIGTERMINATE\"\n");
    let text = e.to_string();
    assert!(
        text.starts_with(
            "amp.toml:3:15: workers.a.stop_signal: unknown signal \"SIGTERMINATE\": write a signal name such as \"SIGTERM\" or \"TERM\""
        ),
        "{text}"
    );
    assert!(
        text.contains("SIGUSR1"),
        "the accepted names are listed: {text}"
    );
}

#[test]
fn bad_ring_sizes() {
    let e = fail("[workers.a]\ncommand = \"x\"\nring = { tasks = \"1000B\", completions = 128 }\n");
    assert_eq!(
        lines(&e),
        [
            "amp.toml:3:18: workers.a.ring.tasks: 1000 bytes is not a power of two in 256..=1073741824; use e.g. \"64KiB\" or \"1MiB\"",
            "amp.toml:3:41: workers.a.ring.completions: 128 bytes is not a power of two in 256..=1073741824; use e.g. \"64KiB\" or \"1MiB\"",
        ]
    );
    // The default max_record (64 KiB) does not fit a 64 KiB ring.
    let e = fail("[workers.a]\ncommand = \"x\"\nring = { tasks = \"64KiB\" }\n");
    assert_eq!(
        e.to_string(),
        "amp.toml:3:18: workers.a.ring.tasks: max_record 65536 bytes (the default) does not fit the tasks ring of \
         65536 bytes (at most 32760): raise ring.tasks or lower ring.max_record"
    );
    let e = fail("[workers.a]\ncommand = \"x\"\n[workers.a.ring]\nmax_record = \"1MiB\"\n");
    assert_eq!(lines(&e).len(), 2, "both rings are too small: {e}");
    assert!(lines(&e)[0].starts_with(
        "amp.toml:4:14: workers.a.ring.max_record: max_record 1048576 bytes does not fit"
    ));
    let e = fail("[workers.a]\ncommand = \"x\"\nring = { tasks = \"1KB\" }\n");
    assert!(e.to_string().starts_with("amp.toml:3:18: workers.a.ring.tasks: invalid size \"1KB\": unknown unit \"KB\" (did you mean \"KiB\"?"), "{e}");
}

#[test]
fn impossible_values_are_all_reported_in_file_order() {
    let e = fail(
        r#"[supervisor]
heartbeat_interval = "5s"
heartbeat_timeout = "5s"
metrics_addr = "localhost"

[workers.Bad]
command = "amp echo"
replicas = 0
ready_timeout = "0s"
backoff = { initial = "10s", max = "1s", multiplier = 0.5, jitter = 1.5 }
nice = 20
cpu_affinity = [0, 0, 5000]
log_keep = 3

[workers.plain]
command = "/bin/true"
ipc = false
kinds = ["x"]
concurrency = 4

[workers.job]
command = "x"
restart = "always"

[workers.user]
command = "x"
depends_on = { job = "completed_successfully" }
probe = { type = "exec", command = "true" }
user = "-root"

[kinds.nobody]
batch = 0
"#,
    );
    let got = lines(&e);
    let want = [
        "amp.toml:3:21: supervisor.heartbeat_timeout: heartbeat_timeout (5s) must be longer than heartbeat_interval (5s), e.g. 3 to 5 intervals",
        "amp.toml:4:16: supervisor.metrics_addr: invalid address \"localhost\": expected \"HOST:PORT\" (e.g. \"127.0.0.1:9090\") or a port (\"9090\", on loopback)",
        "amp.toml:6:10: workers.Bad: invalid worker name \"Bad\": use 1 to 64 characters from a-z, 0-9, '_' and '-'",
        "amp.toml:7:11: workers.Bad.command: \"amp echo\" contains whitespace: put the program in `command` and its arguments in `args`",
        "amp.toml:8:12: workers.Bad.replicas: must be at least 1 (to disable a worker, remove its table)",
        "amp.toml:9:17: workers.Bad.ready_timeout: must be longer than zero, e.g. \"500ms\" or \"5s\"",
        "amp.toml:10:23: workers.Bad.backoff.initial: initial (10s) is longer than max (1s): lower initial or raise max",
        "amp.toml:10:55: workers.Bad.backoff.multiplier: 0.5 must be a number >= 1.0",
        "amp.toml:10:69: workers.Bad.backoff.jitter: 1.5 is outside 0.0..=1.0",
        "amp.toml:11:8: workers.Bad.nice: 20 is outside -20..=19",
        "amp.toml:12:20: workers.Bad.cpu_affinity: CPU 0 is listed twice",
        "amp.toml:12:23: workers.Bad.cpu_affinity: CPU index 5000 is out of range (0..1024)",
        "amp.toml:13:12: workers.Bad.log_keep: `log_keep` needs `log_file`: set log_file or remove log_keep",
        "amp.toml:18:9: workers.plain.kinds: only amp-ipc workers take `kinds`, and this one has ipc = false: a plain process cannot serve tasks",
        "amp.toml:19:15: workers.plain.concurrency: only amp-ipc workers take `concurrency`, and this one has ipc = false",
        "amp.toml:27:16: workers.user.depends_on: \"job\" has restart = \"always\", so it never completes: depend on it being \"ready\" or \"started\", or give it restart = \"on-failure\" or \"never\"",
        "amp.toml:28:9: workers.user.probe: a probe is only for plain processes (ipc = false); amp-ipc workers report readiness in their handshake",
        "amp.toml:29:8: workers.user.user: invalid name \"-root\": expected a user/group name (a letter or '_', then letters, digits, '_', '.', '-', at most 32) or a numeric id",
        "amp.toml:31:8: kinds.nobody: no worker serves kind \"nobody\" (served: none); add it to a worker's `kinds` or remove this table",
        "amp.toml:32:9: kinds.nobody.batch: 0 is outside 1..=4096",
    ];
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g, w, "line {i} differs");
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn no_workers() {
    let e = fail("[supervisor]\nshm_prefix = \"amp\"\n");
    assert_eq!(
        e.to_string(),
        "amp.toml:1:1: workers: no workers: add at least one [workers.NAME] table with a `command`"
    );
}

#[test]
fn classes_are_checked() {
    let e = fail(
        "[workers.a]\ncommand = \"x\"\n[[class]]\nname = \"hi\"\nweight = 0\n[[class]]\nname = \"hi\"\n",
    );
    assert_eq!(
        lines(&e),
        [
            "amp.toml:5:10: class[0].weight: 0 is outside 1..=1000",
            "amp.toml:7:8: class[1].name: class \"hi\" is declared twice",
        ]
    );
    let e = fail("[workers.a]\ncommand = \"x\"\n[[class]]\nname = \"hi\"\nprio = 1\n");
    assert!(
        e.to_string()
            .starts_with("amp.toml:5:1: class[0].prio: unknown field `prio`"),
        "{e}"
    );
}

#[test]
fn read_error_names_the_file() {
    let e = crate::config::load(std::path::Path::new("/nonexistent/amp.toml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(
        e.to_string()
            .starts_with("/nonexistent/amp.toml: cannot read the config file: "),
        "{e}"
    );
    assert!(e.diagnostics().is_empty());
}

#[test]
fn nested_values_columns_in_characters_and_crlf() {
    let e = fail("[workers.a]\ncommand = \"x\"\nipc = false\nprobe = { type = \"tcp\" }\n");
    assert_eq!(
        e.to_string(),
        "amp.toml:4:9: workers.a.probe: missing field `port`"
    );
    let e =
        fail("[workers.a]\ncommand = \"x\"\nipc = false\nprobe = { type = \"http\", port = 1 }\n");
    assert!(
        e.to_string()
            .starts_with("amp.toml:4:18: workers.a.probe.type: unknown variant `http`"),
        "{e}"
    );
    // Columns count characters, not bytes: "é" is two bytes.
    let e = fail("# ünïcode\n[workers.a]\ncommand = \"x\"\nenv = { \"é\" = 1, \"ü\" = 2 }\n");
    assert_eq!(
        e.to_string(),
        "amp.toml:4:15: workers.a.env.é: invalid type: integer `1`, expected a string"
    );
    let e = fail("[workers.a]\r\ncommand = \"x\"\r\ndepends_on = [\"b\", 3]\r\n");
    assert_eq!(
        e.to_string(),
        "amp.toml:3:20: workers.a.depends_on[1]: invalid type: integer `3`, expected a string"
    );
    let e = fail("[workers.a]\ncommand = \"x\"\n[workers.a]\ncommand = \"y\"\n");
    assert!(matches!(e, ConfigError::Syntax(_)));
    assert_eq!(
        e.to_string(),
        "amp.toml:3:10: workers.a: invalid TOML: duplicate key"
    );
}

#[test]
fn list_form_duplicates_and_bad_kind_names() {
    let e = fail("[workers.a]\ncommand = \"x\"\nkinds = [\"Echo\", \"b\", \"b\"]\n[workers.b]\ncommand = \"x\"\ndepends_on = [\"a\", \"a\"]\n");
    assert_eq!(
        lines(&e),
        [
            "amp.toml:3:10: workers.a.kinds: invalid kind name \"Echo\": use 1 to 64 characters from a-z, 0-9, '_' and '-'",
            "amp.toml:3:23: workers.a.kinds: kind \"b\" is listed twice",
            "amp.toml:6:20: workers.b.depends_on: \"a\" is listed twice",
        ]
    );
}
