//! Running the `nft` binary: apply a ruleset from standard input, list our table as JSON. Every
//! run has a deadline (a hung nft is killed) and capped output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Where Debian installs nft. A fixed path, not `$PATH`: the daemon must not run whatever `nft`
/// its environment happens to name.
const NFT_PATHS: [&str; 2] = ["/usr/sbin/nft", "/sbin/nft"];
/// Longest output read from nft (our table lists in a few KiB).
const MAX_OUTPUT: u64 = 4 * 1024 * 1024;
/// Longest error text kept in an error message.
const MAX_STDERR_SHOWN: usize = 600;

/// The `nft` command.
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
    timeout: Duration,
}

/// What one nft run produced.
#[derive(Debug)]
struct Ran {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: String,
}

impl Nft {
    /// The installed nft (`/usr/sbin/nft`, else `/sbin/nft`), with a 10 s deadline per run.
    pub fn find() -> Result<Nft> {
        NFT_PATHS
            .iter()
            .map(Path::new)
            .find(|p| p.is_file())
            .map(|p| Nft::at(p.to_owned()))
            .ok_or(Error::NftMissing)
    }

    /// An nft at `program` (tests point this at a stand-in).
    pub fn at(program: PathBuf) -> Nft {
        Nft {
            program,
            timeout: Duration::from_secs(10),
        }
    }

    /// Changes the deadline of each run.
    pub fn with_timeout(mut self, timeout: Duration) -> Nft {
        self.timeout = timeout;
        self
    }

    /// Loads `ruleset` with `nft -f -`: one transaction, applied whole or not at all.
    pub fn apply(&self, ruleset: &str) -> Result<()> {
        let ran = self.run(&["-f", "-"], Some(ruleset.as_bytes()), "-f -")?;
        if !ran.status.success() {
            return Err(failed("-f -", &ran));
        }
        Ok(())
    }

    /// `nft -j list table FAMILY NAME`: the JSON listing, or `None` when the table does not
    /// exist.
    pub fn list_table_json(&self, family: &str, name: &str) -> Result<Option<String>> {
        let action = format!("-j list table {family} {name}");
        let ran = self.run(&["-j", "list", "table", family, name], None, &action)?;
        if !ran.status.success() {
            // nft reports a missing table as ENOENT (LC_ALL=C keeps the text stable).
            if ran.stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(failed(&action, &ran));
        }
        String::from_utf8(ran.stdout)
            .map(Some)
            .map_err(|_| Error::NftOutput("the listing is not UTF-8".into()))
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>, action: &str) -> Result<Ran> {
        let mut child = Command::new(&self.program)
            .args(args)
            .env_clear()
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(format!("running {} {action}", self.program.display()), e))?;
        // Feed stdin and drain both pipes on their own threads, so neither side can block the
        // other, and wait with a deadline.
        let writer = child
            .stdin
            .take()
            .zip(stdin.map(<[u8]>::to_vec))
            .map(|(mut pipe, bytes)| {
                std::thread::spawn(move || {
                    let _ = pipe.write_all(&bytes);
                })
            });
        let out = child.stdout.take().map(|p| {
            std::thread::spawn(move || clawgate_protocol::io::read_to_end_capped(p, MAX_OUTPUT))
        });
        let err = child.stderr.take().map(|p| {
            std::thread::spawn(move || clawgate_protocol::io::read_to_end_capped(p, MAX_OUTPUT))
        });
        let status = wait_with_deadline(&mut child, self.timeout).map_err(|e| match e {
            WaitError::TimedOut => Error::NftTimeout {
                action: action.to_owned(),
                seconds: self.timeout.as_secs(),
            },
            WaitError::Io(e) => Error::io(format!("waiting for nft {action}"), e),
        })?;
        if let Some(w) = writer {
            let _ = w.join();
        }
        let collect = |h: Option<std::thread::JoinHandle<std::io::Result<Vec<u8>>>>| {
            h.map_or(Ok(Vec::new()), |h| {
                h.join()
                    .map_err(|_| std::io::Error::other("reader thread panicked"))?
            })
        };
        let stdout = collect(out).map_err(|e| Error::io(format!("reading nft {action}"), e))?;
        let stderr = collect(err).map_err(|e| Error::io(format!("reading nft {action}"), e))?;
        Ok(Ran {
            status,
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

enum WaitError {
    TimedOut,
    Io(std::io::Error),
}

fn wait_with_deadline(
    child: &mut std::process::Child,
    timeout: Duration,
) -> std::result::Result<ExitStatus, WaitError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(WaitError::Io)? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(WaitError::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn failed(action: &str, ran: &Ran) -> Error {
    let mut stderr: String = ran.stderr.trim().replace('\n', " | ");
    if stderr.len() > MAX_STDERR_SHOWN {
        let mut cut = MAX_STDERR_SHOWN;
        while !stderr.is_char_boundary(cut) {
            cut -= 1;
        }
        stderr.truncate(cut);
        stderr.push('…');
    }
    if stderr.contains("Operation not permitted") {
        stderr.push_str(" (nft needs root, or CAP_NET_ADMIN)");
    }
    Error::Nft {
        action: action.to_owned(),
        status: ran.status.to_string(),
        stderr,
    }
}
