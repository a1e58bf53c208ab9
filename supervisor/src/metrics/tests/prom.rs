//! A strict parser of the Prometheus text exposition format 0.0.4, for the tests: it refuses
//! anything a Prometheus server would refuse, and a few things it would merely tolerate
//! (samples before their `# TYPE`, a family split in two, duplicate series, a histogram without
//! monotone cumulative buckets, `+Inf`, `_sum` or `_count`).

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

/// The parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    pub fn family(&self, name: &str) -> &Family {
        self.families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no family {name}"))
    }

    /// The value of the sample `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families
            .iter()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && s.labels == want)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
            .value
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
            && !s.is_empty() =>
        {
            s.parse().map_err(|e| format!("bad value {s:?}: {e}"))
        }
        _ => Err(format!("bad value {s:?}")),
    }
}

/// Parses `name{a="x",b="y"} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("no value in {line:?}"))?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let end = loop {
            // Label name up to `=`, or `}`.
            let start = match chars.peek() {
                Some(&(i, '}')) => break i + 1,
                Some(&(i, _)) => i,
                None => return Err(format!("unterminated labels in {line:?}")),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.ok_or_else(|| format!("label without `=` in {line:?}"))?;
            let lname = &r[start..eq];
            if !is_label_name(lname) {
                return Err(format!("bad label name {lname:?} in {line:?}"));
            }
            if chars.next().map(|x| x.1) != Some('"') {
                return Err(format!("label value not quoted in {line:?}"));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next().map(|x| x.1) {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => return Err(format!("bad escape {other:?} in {line:?}")),
                    },
                    '\n' => return Err(format!("raw newline in label value in {line:?}")),
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("unterminated label value in {line:?}"));
            }
            if labels.insert(lname.to_owned(), value).is_some() {
                return Err(format!("label {lname} twice in {line:?}"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((i, '}')) => break i + 1,
                other => return Err(format!("expected `,` or `}}`, got {other:?} in {line:?}")),
            }
        };
        rest = &r[end..];
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("no space before the value in {line:?}"))?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().unwrap_or(""))?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("bad timestamp {ts:?} in {line:?}"))?;
    }
    if parts.next().is_some() {
        return Err(format!("trailing fields in {line:?}"));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// The family a sample name belongs to, given the declared types.
fn family_of<'a>(sample: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    if types.contains_key(sample) {
        return sample;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram") {
                return base;
            }
        }
    }
    sample
}

/// Parses and validates `text`.
pub fn parse(text: &str) -> Result<Exposition, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("exposition does not end with a newline".into());
    }
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helps: BTreeSet<String> = BTreeSet::new();
    let mut out = Exposition::default();
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut series: BTreeSet<(String, Vec<(String, String)>)> = BTreeSet::new();
    // Enter family `name` (finishing the current one); a finished family may not come back.
    let mut enter = |out: &mut Exposition, name: &str| -> Result<(), String> {
        if out.families.last().is_some_and(|f| f.name == name) {
            return Ok(());
        }
        if let Some(cur) = out.families.last() {
            finished.insert(cur.name.clone());
        }
        if finished.contains(name) {
            return Err(format!(
                "family {name} is split (its lines are not together)"
            ));
        }
        out.families.push(Family {
            name: name.to_owned(),
            kind: "untyped".into(),
            help: None,
            samples: Vec::new(),
        });
        Ok(())
    };
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('#') {
            let mut parts = c.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), help) => {
                    if !is_metric_name(name) || !helps.insert(name.to_owned()) {
                        return Err(at(format!("bad or repeated HELP for {name}")));
                    }
                    enter(&mut out, name).map_err(at)?;
                    let f = out.families.last_mut().expect("entered");
                    f.help = Some(help.unwrap_or("").to_owned());
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(at(format!("unknown type {kind}")));
                    }
                    if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                        return Err(at(format!("repeated TYPE for {name}")));
                    }
                    enter(&mut out, name).map_err(at)?;
                    let f = out.families.last_mut().expect("entered");
                    if !f.samples.is_empty() {
                        return Err(at(format!("TYPE for {name} after its samples")));
                    }
                    f.kind = kind.to_owned();
                }
                _ => {} // Other comments are allowed.
            }
            continue;
        }
        let s = parse_sample(line).map_err(at)?;
        let fam = family_of(&s.name, &types).to_owned();
        if !types.contains_key(&fam) {
            return Err(at(format!("sample {} has no TYPE before it", s.name)));
        }
        enter(&mut out, &fam).map_err(at)?;
        let key = (
            s.name.clone(),
            s.labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        );
        if !series.insert(key) {
            return Err(at(format!("duplicate series {}{:?}", s.name, s.labels)));
        }
        let f = out.families.last_mut().expect("entered");
        if f.kind == "counter" && (s.value.is_nan() || s.value < 0.0) {
            return Err(at(format!("counter {} is {}", s.name, s.value)));
        }
        if f.kind == "histogram" && s.name == f.name {
            return Err(at(format!("histogram {} has a bare sample", f.name)));
        }
        f.samples.push(s);
    }
    for f in out.families.iter().filter(|f| f.kind == "histogram") {
        check_histogram(f)?;
    }
    Ok(out)
}

/// One histogram series: its `(le, count)` buckets, `_sum` and `_count`.
type Series = (Vec<(f64, f64)>, Option<f64>, Option<f64>);

fn check_histogram(f: &Family) -> Result<(), String> {
    // Group by labels without `le`.
    let mut groups: BTreeMap<Vec<(String, String)>, Series> = BTreeMap::new();
    for s in &f.samples {
        let mut key: Vec<(String, String)> = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        key.sort();
        let g = groups.entry(key).or_default();
        let suffix = &s.name[f.name.len()..];
        match suffix {
            "_bucket" => {
                let le = s
                    .labels
                    .get("le")
                    .ok_or_else(|| format!("{} bucket without le", f.name))?;
                g.0.push((parse_value(le)?, s.value));
            }
            "_sum" => g.1 = Some(s.value),
            "_count" => g.2 = Some(s.value),
            _ => return Err(format!("{}: unexpected sample {}", f.name, s.name)),
        }
    }
    for (labels, (buckets, sum, count)) in groups {
        let count = count.ok_or_else(|| format!("{}{labels:?} has no _count", f.name))?;
        sum.ok_or_else(|| format!("{}{labels:?} has no _sum", f.name))?;
        if !buckets.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err(format!("{}{labels:?}: le not ascending", f.name));
        }
        if !buckets.windows(2).all(|w| w[0].1 <= w[1].1) {
            return Err(format!("{}{labels:?}: buckets not cumulative", f.name));
        }
        match buckets.last() {
            Some(&(le, n)) if le == f64::INFINITY => {
                if n != count {
                    return Err(format!("{}{labels:?}: +Inf {n} != count {count}", f.name));
                }
            }
            _ => return Err(format!("{}{labels:?} has no +Inf bucket", f.name)),
        }
    }
    Ok(())
}

#[test]
fn metrics_parser_refuses_broken_expositions() {
    let good = "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
    parse(good).unwrap();
    let bad = [
        ("no TYPE", "m 1\n"),
        ("type after sample", "# TYPE m gauge\nm 1\n# TYPE m gauge\n"),
        (
            "split family",
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",
        ),
        ("duplicate", "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n"),
        ("bad escape", "# TYPE a gauge\na{x=\"\\t\"} 1\n"),
        ("unquoted", "# TYPE a gauge\na{x=1} 1\n"),
        ("bad name", "# TYPE 1a gauge\n1a 1\n"),
        ("bad value", "# TYPE a gauge\na one\n"),
        ("negative counter", "# TYPE a_total counter\na_total -1\n"),
        ("no newline", "# TYPE a gauge\na 1"),
        (
            "no +Inf",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
        ),
        (
            "+Inf != count",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 2\n",
        ),
        (
            "not cumulative",
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n",
        ),
        (
            "no sum",
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        ),
    ];
    for (what, text) in bad {
        assert!(parse(text).is_err(), "accepted {what}: {text:?}");
    }
}
