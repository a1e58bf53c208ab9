//! Unit tests of the config module: every error class at its exact position, and the model.

mod adapt;
mod errors;
mod model;
mod pipeline;

use super::{parse, Config, ConfigError};
use std::path::Path;

/// Parses `text` as `amp.toml`, expecting success.
fn ok(text: &str) -> Config {
    match parse(text, Path::new("amp.toml")) {
        Ok(c) => c,
        Err(e) => panic!("expected the config to parse, got:\n{e}"),
    }
}

/// Parses `text` as `amp.toml`, expecting failure.
fn fail(text: &str) -> ConfigError {
    match parse(text, Path::new("amp.toml")) {
        Ok(c) => panic!("expected an error, got {c:#?}"),
        Err(e) => e,
    }
}

/// The error's Display lines.
fn lines(e: &ConfigError) -> Vec<String> {
    e.to_string().lines().map(str::to_owned).collect()
}
