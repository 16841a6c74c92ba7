//! `clawgate enroll`: the command-line side of enrollment. The protocol steps (token file
//! checks, the pinned call, the identity written before the token file is destroyed) are
//! `clawgate_hub::enroll`'s; this adds what the command line promises:
//!
//! * `--hub` must name the Hub the token file names, and every `--pin` must be one of its TLS
//!   pins (an out-of-band cross-check of the file the provisioner dropped);
//! * an enrolled appliance refuses a second enrollment unless `--force`; with `--force` the old
//!   identity is set aside first and put back if the new enrollment fails, and on success the
//!   old Hub's state (`hub.db`, the bundle in force and its high-water mark) is moved into
//!   `replaced-<unix time>/`, because cursors, consumed decisions and bundle versions belong to
//!   the old enrollment;
//! * run as root for a state directory another user owns (the packaged daemon's), the identity
//!   file is given to that user, so the daemon can read it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use clawgate_hub::client::Timeouts;
use clawgate_hub::enroll::{EnrollOptions, local_hostname, read_token_file};
use clawgate_hub::identity::Identity;

use crate::error::{Error, Result};

/// Files and directories of the Hub sync in the state directory, moved aside by `--force`.
const HUB_STATE: [&str; 4] = ["hub.db", "hub.db-wal", "hub.db-shm", super::BUNDLE_DIR];

/// What `clawgate enroll` was asked.
#[derive(Debug, Clone)]
pub struct EnrollArgs {
    /// `--hub`: must equal the token file's Hub.
    pub hub: String,
    /// `--token-file`.
    pub token_file: PathBuf,
    /// `--pin` (hex SHA-256 of the Hub's TLS SPKI), each one of the token file's pins.
    pub pins: Vec<String>,
    /// `--force`: replace an existing enrollment.
    pub force: bool,
    /// The state directory.
    pub state_dir: PathBuf,
}

/// What enrollment produced.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The stored identity.
    pub identity: Identity,
    /// Where the previous enrollment's state went (`--force` only).
    pub replaced: Option<PathBuf>,
}

/// Enrolls this appliance (see the module docs).
pub fn enroll(args: &EnrollArgs) -> Result<Enrolled> {
    crate::daemon::ensure_private_dir(&args.state_dir)?;
    let identity_path = Identity::path(&args.state_dir);
    let existing = identity_path.exists();
    if existing && !args.force {
        let detail = match Identity::load(&args.state_dir) {
            Ok(Some(id)) => format!(
                "already enrolled as appliance {} of tenant {} ({})",
                id.appliance_id,
                id.tenant_id,
                identity_path.display()
            ),
            Ok(None) => format!("{} exists", identity_path.display()),
            Err(e) => format!("{} exists but does not load ({e})", identity_path.display()),
        };
        return Err(Error::Config(format!(
            "{detail}: refusing to enroll again; use --force to replace the enrollment"
        )));
    }
    // Check the file against the command line before anything is changed or sent.
    let token = read_token_file(&args.token_file)?;
    if normalise_url(&args.hub) != normalise_url(&token.hub) {
        return Err(Error::Config(format!(
            "--hub {} does not match the token file's Hub {}: refusing to enroll",
            args.hub.escape_debug(),
            token.hub.escape_debug()
        )));
    }
    for pin in &args.pins {
        let parsed = clawgate_hub::signing::parse_pins(std::slice::from_ref(pin))?;
        if !parsed.iter().all(|p| token.pins.contains(p)) {
            return Err(Error::Config(format!(
                "--pin {} is not one of the token file's TLS pins: refusing to enroll",
                pin.escape_debug()
            )));
        }
    }
    drop(token);

    let aside = args.state_dir.join("hub-identity.json.replacing");
    if existing {
        std::fs::rename(&identity_path, &aside)
            .map_err(|e| Error::io(format!("setting {} aside", identity_path.display()), e))?;
    }
    let options = EnrollOptions {
        hostname: local_hostname(),
        version: env!("CARGO_PKG_VERSION").into(),
        timeouts: Timeouts::default(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the runtime", e))?;
    let result = runtime.block_on(clawgate_hub::enroll::enroll(
        &args.token_file,
        &args.state_dir,
        &options,
    ));
    let identity = match result {
        Ok(identity) => identity,
        Err(e) => {
            if existing && let Err(back) = std::fs::rename(&aside, &identity_path) {
                return Err(Error::Config(format!(
                    "enrollment failed ({e}) and the previous identity could not be put back \
                     from {} ({back})",
                    aside.display()
                )));
            }
            return Err(e.into());
        }
    };
    let replaced = if existing {
        Some(move_old_state(&args.state_dir, &aside)?)
    } else {
        None
    };
    give_to_state_owner(&args.state_dir, &identity_path)?;
    Ok(Enrolled { identity, replaced })
}

fn normalise_url(url: &str) -> String {
    let trimmed = url.trim();
    if trimmed.ends_with('/') {
        trimmed.to_owned()
    } else {
        format!("{trimmed}/")
    }
}

/// Moves the previous enrollment's identity and Hub state into `replaced-<now>/`.
fn move_old_state(state_dir: &Path, aside: &Path) -> Result<PathBuf> {
    let dir = state_dir.join(format!("replaced-{}", super::unix_now()));
    crate::daemon::ensure_private_dir(&dir)?;
    std::fs::rename(aside, dir.join(clawgate_hub::identity::IDENTITY_FILE))
        .map_err(|e| Error::io(format!("moving {} aside", aside.display()), e))?;
    for name in HUB_STATE {
        let from = state_dir.join(name);
        if from.exists() {
            std::fs::rename(&from, dir.join(name))
                .map_err(|e| Error::io(format!("moving {} aside", from.display()), e))?;
        }
    }
    Ok(dir)
}

/// Run as root on a state directory owned by another user: give the identity to that user.
fn give_to_state_owner(state_dir: &Path, identity: &Path) -> Result<()> {
    let owner = std::fs::metadata(state_dir)
        .map_err(|e| Error::io(format!("reading {}", state_dir.display()), e))?
        .uid();
    if nix::unistd::geteuid().is_root() && owner != 0 {
        std::os::unix::fs::chown(identity, Some(owner), None)
            .map_err(|e| Error::io(format!("giving {} to uid {owner}", identity.display()), e))?;
    }
    Ok(())
}
