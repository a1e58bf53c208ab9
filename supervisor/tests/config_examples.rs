//! Every `examples/*.toml` must load, so none rots; a few facts about each are checked.

use amp_supervisor::config::{
    self, Config, DependencyCondition, Program, ReadinessProbe, WorkerMode,
};
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn load(name: &str) -> Config {
    let path = examples_dir().join(name);
    config::load(&path).unwrap_or_else(|e| panic!("{}:\n{e}", path.display()))
}

fn names<'a>(workers: impl IntoIterator<Item = &'a config::WorkerConfig>) -> Vec<&'a str> {
    workers.into_iter().map(|w| w.name.as_str()).collect()
}

#[test]
fn config_every_example_loads() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).expect("examples/ exists") {
        let path = entry.expect("readable directory entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Err(e) = config::load(&path) {
                panic!("{} does not load:\n{e}", path.display());
            }
            found.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    found.sort();
    for required in ["defaults.toml", "demo.toml", "diamond.toml", "plain.toml"] {
        assert!(
            found.iter().any(|f| f == required),
            "examples/{required} is missing (found {found:?})"
        );
    }
}

#[test]
fn config_demo_graph() {
    let c = load("demo.toml");
    assert_eq!(names(&c.workers), ["echo", "hash", "sleep", "flaky"]);
    // Ties go to file order: hash is free as soon as echo is placed.
    assert_eq!(names(c.topo_order()), ["echo", "hash", "sleep", "flaky"]);
    assert_eq!(
        c.worker("hash").unwrap().depends_on[0].condition,
        DependencyCondition::Ready
    );
    assert_eq!(c.worker("sleep").unwrap().replicas, 2);
    assert_eq!(
        c.worker("echo").unwrap().command,
        Program::Name("amp-echo".into())
    );
    assert_eq!(
        c.kinds.keys().map(String::as_str).collect::<Vec<_>>(),
        ["echo", "fingerprint", "flaky", "hash", "sleep", "validate"]
    );
}

#[test]
fn config_diamond_order() {
    let c = load("diamond.toml");
    assert_eq!(names(c.topo_order()), ["a", "b", "c", "d"]);
    let d = c.worker("d").unwrap();
    assert_eq!(
        d.depends_on
            .iter()
            .map(|x| x.name.as_str())
            .collect::<Vec<_>>(),
        ["b", "c"]
    );
}

#[test]
fn config_plain_processes() {
    let c = load("plain.toml");
    let web = c.worker("web").unwrap();
    assert_eq!(
        web.mode,
        WorkerMode::Plain {
            probe: ReadinessProbe::Tcp {
                host: "127.0.0.1".into(),
                port: 8765
            }
        }
    );
    // `cwd = "."` is resolved against the directory of the file.
    assert_eq!(web.cwd.as_deref(), Some(examples_dir().join(".").as_path()));
    assert!(matches!(
        &c.worker("marker").unwrap().mode,
        WorkerMode::Plain {
            probe: ReadinessProbe::Exec { .. }
        }
    ));
    assert_eq!(
        c.worker("idle").unwrap().mode,
        WorkerMode::Plain {
            probe: ReadinessProbe::Started
        }
    );
    assert_eq!(
        names(c.topo_order()),
        ["migrate", "web", "marker", "idle", "echo"]
    );
}

#[test]
fn config_defaults_example_matches_the_defaults() {
    let written = load("defaults.toml");
    let minimal = config::parse(
        "[workers.echo]\ncommand = \"amp-echo\"\nkinds = [\"echo\"]\n",
        &examples_dir().join("defaults.toml"),
    )
    .expect("minimal config parses");
    assert_eq!(written, minimal);
}

/// Every ```toml block of docs/config.md parses; a block that declares no worker (a lone
/// `[supervisor]` or `[kinds.sleep]` snippet) gets a stub worker serving `sleep` appended.
#[test]
fn config_doc_snippets_parse() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/config.md is readable");
    let mut blocks = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + "```toml\n".len()..];
        let end = body.find("```").expect("unterminated code block");
        let mut text = body[..end].to_owned();
        if !text.contains("[workers.") {
            text.push_str("\n[workers.doc-stub]\ncommand = \"amp-sleep\"\nkinds = [\"sleep\"]\n");
        }
        if let Err(e) = config::parse(&text, &doc_path) {
            panic!("a toml block of docs/config.md does not parse:\n{text}\n{e}");
        }
        blocks += 1;
        rest = &body[end + 3..];
    }
    assert!(blocks >= 6, "found only {blocks} toml blocks");
}
