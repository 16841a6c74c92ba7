//! The platform's one-time secrets file: what `clawgate provision secrets --from FILE` reads,
//! checks, hands to the vault and then destroys.
//!
//! Format (JSON, UTF-8, at most 1 MiB):
//!
//! ```json
//! {
//!   "format": "clawgate-secrets/1",
//!   "secrets": [
//!     { "name": "provider.anthropic", "value": "sk-ant-…" },
//!     { "name": "stripe", "value": "sk_live_…", "tools": ["web_fetch"], "hosts": ["api.stripe.com"] }
//!   ]
//! }
//! ```
//!
//! `name` is a secret name (1–64 of `A-Z a-z 0-9 _ . -`, unique in the file), `value` is
//! non-empty, `tools` and `hosts` are the secret's scope (deny by default: absent or empty means
//! no tool, no host). The binary gives a provider key (`provider.<route>` or its conventional
//! environment name) without a scope the egress proxy's scope for that provider.
//!
//! The file is refused, and left exactly as it is, when it is a symlink, not a regular file,
//! owned by another user than the one running the command, accessible to group or others (its
//! values must then be treated as exposed), or hard-linked elsewhere (the unlink would leave a
//! copy). It is opened once with `O_NOFOLLOW` and every check is made on that descriptor, so it
//! cannot be swapped between the check and the read; [`SecretsFile::destroy`] overwrites the
//! same descriptor with zeros, fsyncs, and unlinks the path only if it still names that file.
//!
//! Errors carry the path, names, line and column numbers, never a value.

use std::fs::File;
use std::io::{Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use clawgate_protocol::{SecretName, SecretString};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The `format` field this version reads.
pub const FORMAT: &str = "clawgate-secrets/1";
/// Largest file accepted.
pub const MAX_FILE: u64 = 1024 * 1024;

/// One secret from the file.
#[derive(Debug)]
pub struct SecretEntry {
    /// The secret's name.
    pub name: SecretName,
    /// Its value.
    pub value: SecretString,
    /// Tools that may receive it (empty: none).
    pub tools: Vec<String>,
    /// Hosts it may be sent to (empty: none).
    pub hosts: Vec<String>,
    /// Whether the file gave a scope at all (`tools` or `hosts` present).
    pub scoped: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    format: String,
    secrets: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    value: String,
    tools: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
}

/// An opened, checked secrets file.
#[derive(Debug)]
pub struct SecretsFile {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    size: u64,
}

impl SecretsFile {
    /// Opens `path` without following a symlink and checks it (see the module docs). A missing
    /// file is [`Error::Io`] with kind `NotFound`.
    pub fn open(path: &Path) -> Result<SecretsFile> {
        let refuse = |reason: String| Error::SecretsFile {
            path: path.to_owned(),
            reason,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| {
                if e.raw_os_error() == Some(nix::libc::ELOOP) {
                    refuse(
                        "is a symlink; refused (the overwrite could be aimed at another file): \
                         give the real file"
                            .into(),
                    )
                } else {
                    Error::io(format!("opening secrets file {}", path.display()), e)
                }
            })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
        if !meta.file_type().is_file() {
            return Err(refuse("is not a regular file; refused".into()));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(refuse(format!(
                "is owned by uid {}, not by uid {me} running this command; refused (another user \
                 could have planted or read it)",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(refuse(format!(
                "has mode {mode:04o}: group or others can access it, so its values may already \
                 have been read. Nothing was imported and the file was left in place: have the \
                 platform rotate these secrets and write a new file with mode 0600"
            )));
        }
        if meta.nlink() != 1 {
            return Err(refuse(format!(
                "has {} hard links; refused (unlinking this name would leave the plaintext under \
                 another)",
                meta.nlink()
            )));
        }
        if meta.size() > MAX_FILE {
            return Err(refuse(format!(
                "is {} bytes, larger than the {MAX_FILE} accepted",
                meta.size()
            )));
        }
        Ok(SecretsFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            file,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads and parses the secrets.
    pub fn read(&mut self) -> Result<Vec<SecretEntry>> {
        self.file
            .rewind()
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        let bytes = Zeroizing::new(
            clawgate_protocol::io::read_to_end_capped(&self.file, MAX_FILE).map_err(|e| {
                if e.kind() == std::io::ErrorKind::InvalidData {
                    Error::SecretsFile {
                        path: self.path.clone(),
                        reason: format!("is larger than the {MAX_FILE} bytes accepted"),
                    }
                } else {
                    Error::io(format!("reading {}", self.path.display()), e)
                }
            })?,
        );
        parse(&self.path, &bytes)
    }

    /// Overwrites the file with zeros through the checked descriptor, fsyncs it, and unlinks the
    /// path if it still names the same file; then fsyncs the directory.
    pub fn destroy(mut self) -> Result<()> {
        let ctx = |what: &str| format!("{what} {}", self.path.display());
        let zeros = [0u8; 64 * 1024];
        let mut left = self.size;
        self.file
            .rewind()
            .map_err(|e| Error::io(ctx("overwriting"), e))?;
        while left > 0 {
            let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
            self.file
                .write_all(&zeros[..n])
                .map_err(|e| Error::io(ctx("overwriting"), e))?;
            left -= n as u64;
        }
        self.file
            .sync_all()
            .map_err(|e| Error::io(ctx("syncing"), e))?;
        let now =
            std::fs::symlink_metadata(&self.path).map_err(|e| Error::io(ctx("inspecting"), e))?;
        if now.dev() != self.dev || now.ino() != self.ino {
            return Err(Error::SecretsFile {
                path: self.path.clone(),
                reason: "was replaced by another file while it was being imported; the file \
                         read was overwritten, the new one left alone"
                    .into(),
            });
        }
        std::fs::remove_file(&self.path).map_err(|e| Error::io(ctx("removing"), e))?;
        clawgate_protocol::io::sync_parent_dir(&self.path)
            .map_err(|e| Error::io(ctx("syncing the directory of"), e))
    }
}

/// Parses the file's bytes. Errors name lines, columns and secret names, never a value.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<SecretEntry>> {
    let bad = |reason: String| Error::SecretsFile {
        path: path.to_owned(),
        reason,
    };
    // serde's messages can quote the offending input (a value); only the position and the kind
    // of problem are reported.
    let raw: RawFile = serde_json::from_slice(bytes).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "is not valid JSON"
            }
            _ => "does not match the format (format, secrets: [{name, value, tools?, hosts?}])",
        };
        bad(format!("{kind} (line {}, column {})", e.line(), e.column()))
    })?;
    if raw.format != FORMAT {
        return Err(bad(format!(
            "has format `{}`, expected `{FORMAT}`",
            raw.format.escape_debug()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::with_capacity(raw.secrets.len());
    for (i, e) in raw.secrets.into_iter().enumerate() {
        let name = SecretName::new(&e.name).map_err(|err| bad(format!("secrets[{i}]: {err}")))?;
        if !seen.insert(e.name.clone()) {
            return Err(bad(format!("secrets[{i}]: duplicate name {name}")));
        }
        if e.value.is_empty() {
            return Err(bad(format!("secrets[{i}] ({name}): empty value")));
        }
        let scoped = e.tools.is_some() || e.hosts.is_some();
        out.push(SecretEntry {
            name,
            value: SecretString::new(e.value),
            tools: e.tools.unwrap_or_default(),
            hosts: e.hosts.unwrap_or_default(),
            scoped,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // test files are small and our own
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const PLANTED: &str = "planted-Zq8v-value-never-shown";

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn parses_the_format() {
        let text = format!(
            r#"{{"format":"clawgate-secrets/1","secrets":[
                {{"name":"provider.anthropic","value":"{PLANTED}"}},
                {{"name":"stripe","value":"x","tools":["web_fetch"],"hosts":["api.stripe.com"]}}]}}"#
        );
        let got = parse(Path::new("s.json"), text.as_bytes()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].name.as_str(), "provider.anthropic");
        assert_eq!(got[0].value.expose(), PLANTED);
        assert!(!got[0].scoped);
        assert_eq!(got[1].tools, ["web_fetch"]);
        assert_eq!(got[1].hosts, ["api.stripe.com"]);
        assert!(got[1].scoped);
    }

    #[test]
    fn errors_never_quote_a_value() {
        let cases = [
            // A value where a list is expected: serde would quote it.
            format!(
                r#"{{"format":"clawgate-secrets/1","secrets":[{{"name":"a","value":"x","tools":"{PLANTED}"}}]}}"#
            ),
            format!(
                r#"{{"format":"clawgate-secrets/1","secrets":[{{"name":"a","value":{PLANTED}}}]}}"#
            ),
            format!(
                r#"{{"format":"clawgate-secrets/1","secrets":[{{"name":"a","value":"{PLANTED}"}},{{"name":"a","value":"{PLANTED}"}}]}}"#
            ),
            format!(
                r#"{{"format":"clawgate-secrets/1","secrets":[{{"name":"bad name","value":"{PLANTED}"}}]}}"#
            ),
            format!(
                r#"{{"format":"clawgate-secrets/2","secrets":[{{"name":"a","value":"{PLANTED}"}}]}}"#
            ),
            r#"{"format":"clawgate-secrets/1","secrets":[{"name":"a","value":""}]}"#.to_owned(),
            format!(
                r#"{{"format":"clawgate-secrets/1","secrets":[{{"name":"a","value":"{PLANTED}","x":1}}]}}"#
            ),
        ];
        for text in cases {
            let e = parse(Path::new("s.json"), text.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(!e.contains(PLANTED), "{e}");
            assert!(!e.contains("Zq8v"), "{e}");
            assert!(e.contains("s.json"), "{e}");
        }
    }

    #[test]
    fn refusals_leave_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let body = format!(
            r#"{{"format":"clawgate-secrets/1","secrets":[{{"name":"a","value":"{PLANTED}"}}]}}"#
        );
        let readable = write(dir.path(), "readable.json", &body, 0o644);
        let e = SecretsFile::open(&readable).unwrap_err().to_string();
        assert!(e.contains("mode 0644") && e.contains("rotate"), "{e}");
        assert_eq!(std::fs::read_to_string(&readable).unwrap(), body);

        let group = write(dir.path(), "group.json", &body, 0o640);
        assert!(
            SecretsFile::open(&group)
                .unwrap_err()
                .to_string()
                .contains("0640")
        );

        let real = write(dir.path(), "real.json", &body, 0o600);
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = SecretsFile::open(&link).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");

        let hard = dir.path().join("hard.json");
        std::fs::hard_link(&real, &hard).unwrap();
        let e = SecretsFile::open(&real).unwrap_err().to_string();
        assert!(e.contains("2 hard links"), "{e}");
        std::fs::remove_file(&hard).unwrap();

        let e = SecretsFile::open(&dir.path().join("gone.json")).unwrap_err();
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound),
            "{e}"
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), body);
    }

    #[test]
    fn destroy_overwrites_through_the_descriptor_and_unlinks() {
        let dir = tempfile::tempdir().unwrap();
        let body = format!(
            r#"{{"format":"clawgate-secrets/1","secrets":[{{"name":"a","value":"{PLANTED}"}}]}}"#
        );
        let path = write(dir.path(), "s.json", &body, 0o600);
        // A second descriptor on the same inode sees the zeros after the unlink.
        let mut witness = File::open(&path).unwrap();
        let mut f = SecretsFile::open(&path).unwrap();
        assert_eq!(f.read().unwrap()[0].value.expose(), PLANTED);
        f.destroy().unwrap();
        assert!(!path.exists());
        let after = clawgate_protocol::io::read_to_end_capped(&mut witness, 1 << 20).unwrap();
        assert_eq!(after.len(), body.len());
        assert!(after.iter().all(|b| *b == 0));
    }

    #[test]
    fn a_file_swapped_before_destroy_is_not_unlinked() {
        let dir = tempfile::tempdir().unwrap();
        let body = r#"{"format":"clawgate-secrets/1","secrets":[{"name":"a","value":"v"}]}"#;
        let path = write(dir.path(), "s.json", body, 0o600);
        let f = SecretsFile::open(&path).unwrap();
        std::fs::rename(&path, dir.path().join("moved.json")).unwrap();
        write(dir.path(), "s.json", "other", 0o600);
        let e = f.destroy().unwrap_err().to_string();
        assert!(e.contains("replaced"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "other");
    }
}
