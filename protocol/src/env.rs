//! Environment access behind a trait, so tests pass a map instead of mutating the process
//! environment (`std::env::set_var` is banned in `clippy.toml`).

use std::collections::BTreeMap;
use std::ffi::OsString;

/// A source of environment variables.
pub trait Env {
    /// The value of `key`, if set.
    fn var_os(&self, key: &str) -> Option<OsString>;

    /// The value of `key` if it is set and not empty.
    fn non_empty(&self, key: &str) -> Option<OsString> {
        self.var_os(key).filter(|v| !v.is_empty())
    }
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var_os(&self, key: &str) -> Option<OsString> {
        std::env::var_os(key)
    }
}

/// A fixed environment, for tests.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub BTreeMap<String, OsString>);

impl MapEnv {
    /// Builds one from `(key, value)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.into()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn var_os(&self, key: &str) -> Option<OsString> {
        self.0.get(key).cloned()
    }
}
