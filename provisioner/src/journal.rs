//! The provisioning journal: `provision-journal.json` in the state directory (0600, written
//! atomically), one record per step. A step is marked `started` before it changes anything and
//! `done` after its last change, with the facts later steps and `clawgate doctor` need (which
//! OpenClaw config, which agent user, which secrets file was consumed).
//!
//! The steps are idempotent by themselves: the journal does not decide what to redo, it lets a
//! re-run say what it found ("an earlier run stopped during this step"), lets `provision
//! secrets` tell "already imported and destroyed" from "never existed", and lets `doctor` find
//! what was provisioned. It holds no secret value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The journal's file name in the state directory.
pub const FILE: &str = "provision-journal.json";
/// The `format` field.
const FORMAT: &str = "clawgate-provision-journal/1";
/// Largest journal read.
const MAX_JOURNAL: u64 = 1024 * 1024;

/// Where a step got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// It began and has not finished (still running, or killed).
    Started,
    /// It finished.
    Done,
}

/// One step's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// Where it got to.
    pub state: StepState,
    /// Unix seconds of the last change of this record.
    pub at: u64,
    /// Facts the step recorded (paths, user names, secret names; never values).
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JournalFile {
    format: String,
    steps: BTreeMap<String, StepRecord>,
}

/// The journal of one state directory.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    steps: BTreeMap<String, StepRecord>,
}

impl Journal {
    /// The journal's path in `state_dir`.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// Loads the journal of `state_dir` (empty when there is none). A malformed journal is an
    /// error: guessing what was done could skip a step.
    pub fn load(state_dir: &Path) -> Result<Journal> {
        let path = Self::path_in(state_dir);
        let bad = |reason: String| Error::Journal {
            path: path.clone(),
            reason,
        };
        let bytes = match clawgate_protocol::io::read_capped(&path, MAX_JOURNAL) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Journal {
                    path,
                    steps: BTreeMap::new(),
                });
            }
            Err(e) => return Err(bad(format!("cannot read it: {e}"))),
        };
        let file: JournalFile = serde_json::from_slice(&bytes).map_err(|e| {
            bad(format!(
                "malformed ({e}); move it away to start over (every step is safe to re-run)"
            ))
        })?;
        if file.format != FORMAT {
            return Err(bad(format!(
                "format `{}`, expected `{FORMAT}`",
                file.format.escape_debug()
            )));
        }
        Ok(Journal {
            path,
            steps: file.steps,
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A step's record.
    pub fn get(&self, step: &str) -> Option<&StepRecord> {
        self.steps.get(step)
    }

    /// A fact recorded by a step.
    pub fn fact(&self, step: &str, key: &str) -> Option<&str> {
        self.steps
            .get(step)
            .and_then(|r| r.facts.get(key))
            .map(String::as_str)
    }

    /// Marks `step` started (keeping facts it recorded before) and writes the journal.
    pub fn start(&mut self, step: &str) -> Result<()> {
        let facts = self
            .steps
            .get(step)
            .map(|r| r.facts.clone())
            .unwrap_or_default();
        self.steps.insert(
            step.to_owned(),
            StepRecord {
                state: StepState::Started,
                at: now(),
                facts,
            },
        );
        self.save()
    }

    /// Records facts for `step` without changing its state, and writes the journal.
    pub fn note(&mut self, step: &str, facts: &[(&str, &str)]) -> Result<()> {
        let record = self
            .steps
            .entry(step.to_owned())
            .or_insert_with(|| StepRecord {
                state: StepState::Started,
                at: now(),
                facts: BTreeMap::new(),
            });
        for (k, v) in facts {
            record.facts.insert((*k).to_owned(), (*v).to_owned());
        }
        record.at = now();
        self.save()
    }

    /// Marks `step` done with `facts` added, and writes the journal.
    pub fn finish(&mut self, step: &str, facts: &[(&str, &str)]) -> Result<()> {
        self.note(step, facts)?;
        if let Some(r) = self.steps.get_mut(step) {
            r.state = StepState::Done;
        }
        self.save()
    }

    fn save(&self) -> Result<()> {
        let file = JournalFile {
            format: FORMAT.to_owned(),
            steps: self.steps.clone(),
        };
        let mut text = serde_json::to_string_pretty(&file).map_err(|e| Error::Journal {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        clawgate_protocol::io::write_atomic(&self.path, text.as_bytes()).map_err(|e| {
            Error::Journal {
                path: self.path.clone(),
                reason: format!("cannot write it: {e}"),
            }
        })
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test files are small and our own
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reload_and_keep_facts_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::load(dir.path()).unwrap();
        assert!(j.get("secrets").is_none());
        j.start("secrets").unwrap();
        j.note("secrets", &[("file", "/root/s.json")]).unwrap();
        let mut j = Journal::load(dir.path()).unwrap();
        assert_eq!(j.get("secrets").unwrap().state, StepState::Started);
        j.start("secrets").unwrap();
        assert_eq!(j.fact("secrets", "file"), Some("/root/s.json"));
        j.finish("secrets", &[("names", "a,b")]).unwrap();
        let j = Journal::load(dir.path()).unwrap();
        assert_eq!(j.get("secrets").unwrap().state, StepState::Done);
        assert_eq!(j.fact("secrets", "names"), Some("a,b"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(j.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_malformed_journal_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(Journal::path_in(dir.path()), "{not json").unwrap();
        let e = Journal::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("malformed") && e.contains("move it away"), "{e}");
        std::fs::write(
            Journal::path_in(dir.path()),
            r#"{"format":"other","steps":{}}"#,
        )
        .unwrap();
        assert!(Journal::load(dir.path()).is_err());
    }
}
