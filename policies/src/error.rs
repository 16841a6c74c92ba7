//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading a policy or reading a hook event.
///
/// Classification itself never fails: input it cannot understand is classified at least `red`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A policy file could not be read.
    #[error("cannot read policy file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A policy file is not valid TOML or does not match the rule format.
    #[error("policy file {file} is invalid: {message}")]
    Parse {
        /// The file (or a label for in-memory sources).
        file: String,
        /// What the TOML parser reported.
        message: String,
    },
    /// A rule is well-formed TOML but makes no sense (unknown tool, bad regex, duplicate id...).
    #[error("rule {rule}: {message}")]
    InvalidRule {
        /// The rule id.
        rule: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `match` or `not_match` example of a rule did not behave as declared; the policy is refused.
    #[error("rule {rule}: example {example} should {expectation} but {actual}")]
    ExampleFailed {
        /// The rule id.
        rule: String,
        /// The example, rendered as JSON.
        example: String,
        /// "match" or "not match".
        expectation: &'static str,
        /// What happened instead.
        actual: String,
    },
    /// A policy directory contains no rule file.
    #[error("policy directory {0} contains no .toml file")]
    EmptyPolicy(PathBuf),
    /// A hook event is not a JSON object with a `toolName` string.
    #[error("invalid tool-call event: {0}")]
    InvalidEvent(String),
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
