//! `[adapt]`, `[kinds.NAME] adapt` and the workers' autoscaling keys: defaults, every key, and
//! the errors.

use super::{fail, lines, ok};
use crate::adapt::{AdaptConfig, GroupScale, Mode, ParamSpec};
use crate::config::ConfigError;
use std::time::Duration;

const WORKERS: &str = "[workers.w]\ncommand = \"x\"\nkinds = [\"a\", \"b\"]\n\
                       [workers.p]\ncommand = \"y\"\nipc = false\n";

fn with_workers(text: &str) -> String {
    format!("{WORKERS}{text}")
}

#[test]
fn adapt_defaults_are_off() {
    let c = ok(WORKERS);
    assert_eq!(c.adapt, AdaptConfig::default());
    assert_eq!(c.adapt.mode("a"), Mode::Off);
    assert!(c.adapt.groups.is_empty());
}

#[test]
fn adapt_every_key() {
    let c = ok(r#"[workers.w]
command = "x"
kinds = ["a", "b"]
replicas = 2
min_replicas = 2
max_replicas = 6
[workers.v]
command = "x"
kinds = ["b"]
max_replicas = 3
autoscale = "advise"
[kinds.a]
adapt = "auto"
[adapt]
mode = "advise"
interval = "200ms"
window = { initial = 4, min = 2, max = 32, tolerance = 1.5, smoothing = 0.3, allowance = 1, backoff = 0.8, error_rate = 0.1, long_window = "20s", stall_factor = 3, stall_min = "1s", warmup = "3s", warmup_fraction = 0.25 }
batch = { latency_target = "50ms", min = 2, max = 64, decrease = 0.6 }
timeout = { factor = 5, min = "200ms", max = "1m", hysteresis = 0.3, min_samples = 50 }
canary = { fraction = 0.25, max_change_fraction = 0.5, settle = "100ms", window = "2s", min_samples = 20, alpha = 0.05, p99_margin = 0.2, error_margin = 0.05, rollout_step = "500ms", cooldown = "10s" }
scale = { queue_wait = "250ms", high_utilisation = 0.8, low_utilisation = 0.2, up_after = "1s", down_cooldown = "1m", up_cooldown = "3s" }
[[adapt.param]]
kind = "a"
name = "chunk"
initial = 8
min = 1
max = 64
step = 4
"#);
    let a = &c.adapt;
    assert_eq!(a.default_mode, Mode::Advise);
    assert_eq!((a.mode("a"), a.mode("b")), (Mode::Auto, Mode::Advise));
    assert_eq!(a.interval, Duration::from_millis(200));
    assert_eq!((a.window.initial, a.window.min, a.window.max), (4.0, 2, 32));
    assert_eq!((a.window.tolerance, a.window.backoff), (1.5, 0.8));
    assert_eq!(a.window.long_window, Duration::from_secs(20));
    assert_eq!(a.window.warmup_fraction, 0.25);
    assert_eq!(a.batch.latency_target, Duration::from_millis(50));
    assert_eq!((a.batch.min, a.batch.max), (2, 64));
    assert_eq!(a.timeout.factor, 5.0);
    assert_eq!(a.timeout.max, Duration::from_secs(60));
    assert_eq!(a.timeout.min_samples, 50);
    assert_eq!(a.canary.fraction, 0.25);
    assert_eq!(a.canary.min_samples, 20);
    assert_eq!(a.canary.cooldown, Duration::from_secs(10));
    assert_eq!(a.scale.queue_wait, Duration::from_millis(250));
    assert_eq!(a.scale.down_cooldown, Duration::from_secs(60));
    assert_eq!(
        a.params["a"],
        vec![ParamSpec {
            name: "chunk".into(),
            initial: 8.0,
            min: 1.0,
            max: 64.0,
            step: 4.0
        }]
    );
    assert_eq!(
        a.groups["w"],
        GroupScale {
            min: 2,
            max: 6,
            // Not given: the [adapt] mode.
            mode: Mode::Advise
        }
    );
    assert_eq!(
        a.groups["v"],
        GroupScale {
            min: 1,
            max: 3,
            mode: Mode::Advise
        }
    );
    // The worker itself is unchanged by its autoscaling keys.
    assert_eq!(c.workers[0].replicas, 2);
    // Without `replicas`, an autoscaled worker starts at its minimum.
    let c =
        ok("[workers.w]\ncommand = \"x\"\nkinds = [\"a\"]\nmin_replicas = 3\nmax_replicas = 5\n");
    assert_eq!(c.workers[0].replicas, 3);
}

#[test]
fn adapt_errors_name_the_key() {
    let e = fail(&with_workers(
        r#"[workers.s]
command = "x"
kinds = ["a"]
replicas = 5
max_replicas = 3
[workers.t]
command = "x"
kinds = ["a"]
min_replicas = 4
max_replicas = 2
[workers.u]
command = "x"
kinds = ["b"]
autoscale = "auto"
[workers.q]
command = "y"
ipc = false
max_replicas = 2
[[adapt.param]]
kind = "zz"
name = "chunk"
initial = 1
min = 0
max = 2
step = 1
"#,
    ));
    let l = lines(&e);
    let want = [
        "amp.toml:10:12: workers.s.replicas: replicas = 5 is outside min_replicas..=max_replicas = 1..=3",
        "amp.toml:15:16: workers.t.min_replicas: 4 is above max_replicas = 2",
        "amp.toml:17:10: workers.u.max_replicas: is missing: `min_replicas` / `autoscale` need `max_replicas` as well",
        "amp.toml:21:10: workers.q.max_replicas: autoscaling follows the queues of the kinds a worker serves; this worker serves none (a plain process or an amp-ipc worker without `kinds`)",
        "amp.toml:26:8: adapt.param.kind: kind \"zz\" is not served by any worker (served: a, b)",
    ];
    assert_eq!(l, want);
}

#[test]
fn adapt_bad_values_are_refused() {
    // A value the controller cannot work with names the setting.
    let e = fail(&with_workers("[adapt]\nwindow = { min = 8, max = 4 }\n"));
    let l = lines(&e).join("\n");
    assert!(
        l.contains("adapt") && l.contains("window") && l.contains("min 8 is above max 4"),
        "{l}"
    );
    let e = fail(&with_workers("[adapt]\ncanary = { fraction = 0.9 }\n"));
    assert!(lines(&e).join("\n").contains("canary.fraction"), "{e}");
    let e = fail(&with_workers("[adapt]\ninterval = \"0s\"\n"));
    assert!(lines(&e).join("\n").contains("adapt.interval"), "{e}");
    // Unknown keys and modes are schema errors naming them.
    let e = fail(&with_workers("[adapt]\nmode = \"sometimes\"\n"));
    assert!(matches!(e, ConfigError::Schema(_)), "{e}");
    assert!(e.to_string().contains("sometimes"), "{e}");
    let e = fail(&with_workers("[adapt.window]\nsize = 3\n"));
    assert!(e.to_string().contains("size"), "{e}");
    let e = fail(&with_workers("[kinds.a]\nadapt = \"always\"\n"));
    assert!(e.to_string().contains("always"), "{e}");
}

#[test]
fn retry_backoff_keys() {
    let c = ok(WORKERS);
    assert_eq!(
        c.supervisor.retry_backoff,
        crate::delivery::DEFAULT_RETRY_BASE
    );
    assert_eq!(
        c.supervisor.retry_backoff_max,
        crate::delivery::DEFAULT_RETRY_CAP
    );
    let c = ok(&format!(
        "[supervisor]\nretry_backoff = \"20ms\"\nretry_backoff_max = \"1s\"\n{WORKERS}"
    ));
    assert_eq!(c.supervisor.retry_backoff, Duration::from_millis(20));
    assert_eq!(c.supervisor.retry_backoff_max, Duration::from_secs(1));
    let e = fail(&format!(
        "[supervisor]\nretry_backoff = \"2s\"\nretry_backoff_max = \"1s\"\n{WORKERS}"
    ));
    assert_eq!(
        lines(&e),
        ["amp.toml:2:17: supervisor.retry_backoff: 2s is above retry_backoff_max = 1s"]
    );
    // Only the maximum, below the default first delay: the first delay follows it.
    let c = ok(&format!(
        "[supervisor]\nretry_backoff_max = \"50ms\"\n{WORKERS}"
    ));
    assert_eq!(c.supervisor.retry_backoff, Duration::from_millis(50));
    let e = fail(&format!("[supervisor]\nretry_backoff = \"0s\"\n{WORKERS}"));
    assert!(e.to_string().contains("supervisor.retry_backoff"), "{e}");
}

#[test]
fn retry_budget_poison_deaths_and_seed_keys() {
    let c = ok(WORKERS);
    assert_eq!(
        c.supervisor.retry_budget,
        crate::delivery::RetryBudget::default()
    );
    assert_eq!(
        c.supervisor.poison_deaths,
        crate::delivery::DEFAULT_POISON_DEATHS
    );
    assert_eq!(c.supervisor.seed, None);
    let c = ok(&format!(
        "[supervisor]\nretry_budget = {{ ratio = 0.5, capacity = 20 }}\npoison_deaths = 5\nseed = 42\ndlq_limit = 10\n{WORKERS}"
    ));
    assert_eq!(
        c.supervisor.retry_budget,
        crate::delivery::RetryBudget {
            ratio: 0.5,
            capacity: 20.0,
            ..crate::delivery::RetryBudget::default()
        }
    );
    assert_eq!(
        (
            c.supervisor.poison_deaths,
            c.supervisor.seed,
            c.supervisor.dlq_limit
        ),
        (5, Some(42), 10)
    );
    let e = fail(&format!(
        "[supervisor]\nretry_budget = {{ ratio = -1.0 }}\npoison_deaths = 0\n{WORKERS}"
    ));
    assert_eq!(
        lines(&e),
        [
            "amp.toml:2:26: supervisor.retry_budget.ratio: -1 must be a finite number >= 0",
            "amp.toml:3:17: supervisor.poison_deaths: 0 is outside 1..=100"
        ]
    );
    let e = fail(&format!(
        "[supervisor]\nretry_budget = {{ rate = 1.0 }}\n{WORKERS}"
    ));
    assert!(e.to_string().contains("unknown field `rate`"), "{e}");
}
