//! The adaptive controller as `top` shows it: the `tune show` answer boiled down to each kind's
//! mode and one line per decision ([`DecisionRow`]).
//!
//! Parsing is lenient on purpose: `top` only displays these figures, so a member it does not
//! know (a newer ampd) or one that is missing (an older one) makes a `?` or an empty field,
//! never a failed poll. Only an answer that is no controller description at all (a refusal, a
//! non-object) makes the controller "unavailable".

use serde_json::Value;

/// Decisions parsed from one answer and kept by the model (the newest ones).
pub const DECISIONS_KEPT: usize = 50;

/// One decision of the adaptive controller, ready for display.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    /// Its id (what `ampctl tune apply ID` takes).
    pub id: u64,
    /// When it was made, in seconds since the controller started.
    pub at_s: f64,
    /// The kind it concerns (for autoscaling: the worker group).
    pub kind: String,
    /// What changes, e.g. `sleep/unit 3: window 64→12` or `s: replicas 1→2`.
    pub summary: String,
    /// Where it stands: `proposed`, `applied`, `superseded`, `running`, `adopted`,
    /// `rolled_back` (or whatever a newer ampd sends).
    pub state: String,
    /// The rule that fired, in words.
    pub reason: String,
    /// The figures before and after, e.g. `window 64→12, short_rtt_ms 3.50`.
    pub evidence: String,
}

impl DecisionRow {
    /// Whether it waits for `ampctl tune apply ID` (advise mode).
    #[must_use]
    pub fn is_proposed(&self) -> bool {
        self.state == "proposed"
    }

    /// Reads one element of `decisions`; `None` when it has no numeric `id`.
    #[must_use]
    pub fn from_json(d: &Value) -> Option<Self> {
        let id = d.get("id")?.as_u64()?;
        let kind = str_of(d, "kind").unwrap_or("?").to_owned();
        let ev = d.get("evidence").unwrap_or(&Value::Null);
        Some(Self {
            id,
            at_s: d.get("at_s").and_then(Value::as_f64).unwrap_or(0.0),
            summary: format!(
                "{}: {}",
                target_text(&kind, d.get("target")),
                change_text(d.get("change"))
            ),
            kind,
            state: str_of(d, "state").unwrap_or("?").to_owned(),
            reason: str_of(ev, "reason").unwrap_or_default().to_owned(),
            evidence: evidence_text(ev.get("before"), ev.get("after")),
        })
    }
}

/// What one `tune show` answer says: each kind's mode and the newest decisions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adaptive {
    /// (kind, mode) in ampd's order, e.g. `("sleep", "auto")`.
    pub modes: Vec<(String, String)>,
    /// The newest [`DECISIONS_KEPT`] decisions, oldest first.
    pub decisions: Vec<DecisionRow>,
}

impl Adaptive {
    /// Reads the `data` of a `tune show` answer. Missing `kinds` or `decisions` members read
    /// as none; decisions without an id are skipped.
    ///
    /// # Errors
    /// A sentence when `data` is not an object with a `kinds` or a `decisions` member.
    pub fn from_data(data: &Value) -> Result<Self, String> {
        let Some(obj) = data.as_object() else {
            return Err("unexpected `tune show` answer (not an object)".to_owned());
        };
        if !obj.contains_key("kinds") && !obj.contains_key("decisions") {
            return Err("unexpected `tune show` answer (no `kinds` or `decisions`)".to_owned());
        }
        let modes = obj
            .get("kinds")
            .and_then(Value::as_object)
            .map(|kinds| {
                kinds
                    .iter()
                    .map(|(k, v)| (k.clone(), str_of(v, "mode").unwrap_or("?").to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let all = obj
            .get("decisions")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        // ampd keeps them newest last; only the newest are shown.
        let mut decisions: Vec<DecisionRow> = all
            .iter()
            .rev()
            .filter_map(DecisionRow::from_json)
            .take(DECISIONS_KEPT)
            .collect();
        decisions.sort_by_key(|d| d.id);
        Ok(Self { modes, decisions })
    }

    /// Reads a `tune show` answer as the poller got it: its `data`, or why there is none.
    ///
    /// # Errors
    /// The refusal or transport error as given, or what [`Adaptive::from_data`] finds wrong.
    pub fn from_answer(answer: Result<Value, String>) -> Result<Self, String> {
        answer.and_then(|data| Self::from_data(&data))
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// `sleep`, `sleep/unit 3`, `sleep/units 1,4`, or the group's name.
fn target_text(kind: &str, target: Option<&Value>) -> String {
    let Some(t) = target else {
        return kind.to_owned();
    };
    match str_of(t, "type") {
        Some("worker") => match t.get("unit").and_then(Value::as_u64) {
            Some(u) => format!("{kind}/unit {u}"),
            None => kind.to_owned(),
        },
        Some("workers") => format!("{kind}/units {}", units(t.get("units"))),
        Some("group") => str_of(t, "worker").unwrap_or(kind).to_owned(),
        _ => kind.to_owned(),
    }
}

/// `1,4` from `[1, 4]`.
fn units(v: Option<&Value>) -> String {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|u| u.as_u64().map_or_else(|| "?".to_owned(), |u| u.to_string()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// `window 64→12`, `timeout none→400ms`, `replicas 3→2, drain unit 5`, `canary a 1→2 (control
/// units 3)`, `adopt #4: a=2`, `roll back #4: a=1`.
fn change_text(change: Option<&Value>) -> String {
    let Some(c) = change else {
        return "?".to_owned();
    };
    let n = |key: &str| {
        c.get(key)
            .and_then(Value::as_f64)
            .map_or_else(|| "?".to_owned(), num)
    };
    let ms = |key: &str| match c.get(key) {
        Some(Value::Null) | None => "none".to_owned(),
        Some(v) => v
            .as_f64()
            .map_or_else(|| "?".to_owned(), |v| format!("{}ms", num(v))),
    };
    let canary = || {
        c.get("canary")
            .and_then(Value::as_u64)
            .map_or_else(|| "?".to_owned(), |id| id.to_string())
    };
    match str_of(c, "type") {
        Some(t @ ("window" | "batch")) => format!("{t} {}→{}", n("from"), n("to")),
        Some("timeout") => format!("timeout {}→{}", ms("from_ms"), ms("to_ms")),
        Some("replicas") => {
            let mut s = format!("replicas {}→{}", n("from"), n("to"));
            if let Some(u) = c.get("drain").and_then(Value::as_u64) {
                s.push_str(&format!(", drain unit {u}"));
            }
            s
        }
        Some("canary") => format!(
            "canary {} (control units {})",
            params_change(c.get("from"), c.get("to")),
            units(c.get("control"))
        ),
        Some("adopt") => format!("adopt #{}: {}", canary(), params(c.get("params"))),
        Some("rollback") => format!("roll back #{}: {}", canary(), params(c.get("params"))),
        Some(other) => other.to_owned(),
        None => "?".to_owned(),
    }
}

/// `a=1, b=2`.
fn params(v: Option<&Value>) -> String {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_f64().map_or_else(|| "?".to_owned(), num)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// The parameters that differ, `a 1→2, b →3`; those that stay are left out.
fn params_change(from: Option<&Value>, to: Option<&Value>) -> String {
    let empty = serde_json::Map::new();
    let from = from.and_then(Value::as_object).unwrap_or(&empty);
    let to = to.and_then(Value::as_object).unwrap_or(&empty);
    let parts: Vec<String> = to
        .iter()
        .filter(|(k, v)| from.get(*k) != Some(*v))
        .map(|(k, v)| {
            let old = from
                .get(k)
                .and_then(Value::as_f64)
                .map(num)
                .unwrap_or_default();
            let new = v.as_f64().map_or_else(|| "?".to_owned(), num);
            format!("{k} {old}→{new}")
        })
        .collect();
    if parts.is_empty() {
        "(same parameters)".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The figures, before first: `queue_wait_ms 396, utilisation 1, replicas 1→2` (a figure in
/// both maps shows as `before→after`, one only after as `→after`).
fn evidence_text(before: Option<&Value>, after: Option<&Value>) -> String {
    let empty = serde_json::Map::new();
    let before = before.and_then(Value::as_object).unwrap_or(&empty);
    let after = after.and_then(Value::as_object).unwrap_or(&empty);
    let fig = |v: &Value| v.as_f64().map_or_else(|| "?".to_owned(), num);
    let mut parts: Vec<String> = before
        .iter()
        .map(|(k, b)| match after.get(k) {
            Some(a) => format!("{k} {}→{}", fig(b), fig(a)),
            None => format!("{k} {}", fig(b)),
        })
        .collect();
    parts.extend(
        after
            .iter()
            .filter(|(k, _)| !before.contains_key(*k))
            .map(|(k, a)| format!("{k} →{}", fig(a))),
    );
    parts.join(", ")
}

/// A figure with as many digits as it deserves: `396`, `12.5`, `0.25`, `1`.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let s = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    };
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}
