//! The second, independent layer for an agent run as a systemd unit: a drop-in with
//! `IPAddressDeny=any` + `IPAddressAllow=localhost`, enforced by systemd with cgroup BPF.
//!
//! It can silently do nothing: systemd accepts the directives on a host without BPF firewalling
//! (no cgroup v2 hierarchy, or `bpf()` refused, e.g. in a container) and only says so at debug
//! level. So support is detected, not assumed, in three steps: systemd is PID 1
//! (`/run/systemd/system` exists); a cgroup v2 hierarchy is mounted (`/sys/fs/cgroup` is cgroup2,
//! or `/sys/fs/cgroup/unified` on a hybrid host: `statfs` magic `CGROUP2_SUPER_MAGIC`); and, the
//! authoritative test, a transient unit with `IPAddressDeny=any` really cannot send a UDP datagram
//! to 127.0.0.1:9 (the send fails with EPERM when the BPF program is attached; without it the
//! datagram goes out and the unit succeeds). Only loopback is touched.
//!
//! The layer filters addresses, not ports: the agent may still reach any loopback port through
//! it. The nftables table stays the authoritative lock; this one holds if that table is flushed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// The drop-in's file name inside `<unit>.d/`.
pub const DROP_IN_NAME: &str = "clawgate-egress-lock.conf";
/// Where administrator drop-ins live.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// The drop-in's text.
pub fn drop_in_text() -> &'static str {
    "# Written by `clawgate provision firewall --agent-unit`: the second, independent egress lock.\n\
     # systemd enforces it with cgroup BPF (cgroup v2): the unit's processes may exchange IP\n\
     # traffic with localhost only. It filters addresses, not ports; the nftables table\n\
     # inet clawgate_egress stays the authoritative lock.\n\
     [Service]\n\
     IPAddressDeny=any\n\
     IPAddressAllow=localhost\n"
}

/// `/etc/systemd/system/<unit>.d/clawgate-egress-lock.conf` for a `.service` or `.slice` unit
/// (a slice such as `user-1001.slice` covers a user's whole session).
pub fn drop_in_path(unit: &str) -> Result<PathBuf> {
    let (stem, suffix) = unit
        .rsplit_once('.')
        .ok_or_else(|| Error::BadUnitName(unit.to_owned()))?;
    let name_ok = !stem.is_empty()
        && unit.len() <= 255
        && stem.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b':' | b'_' | b'.' | b'-' | b'@' | b'\\')
        });
    if !name_ok || !matches!(suffix, "service" | "slice") {
        return Err(Error::BadUnitName(unit.to_owned()));
    }
    Ok(Path::new(UNIT_DIR)
        .join(format!("{unit}.d"))
        .join(DROP_IN_NAME))
}

/// Which cgroup hierarchy the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cgroups {
    /// cgroup v2 only.
    Unified,
    /// v1 controllers with the v2 hierarchy at `/sys/fs/cgroup/unified`.
    Hybrid,
    /// No cgroup v2 hierarchy.
    LegacyOnly,
}

/// Whether `IPAddressDeny=` takes effect here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpFirewall {
    /// A test unit was really cut off.
    Supported,
    /// It would be ignored (or could not be checked): why.
    Unsupported(String),
}

/// What the BPF probe unit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The send was refused with EPERM: the BPF program is attached.
    Refused,
    /// The datagram was sent: systemd accepted the property and enforced nothing.
    Sent,
    /// The probe could not run: why.
    Failed(String),
}

/// Detects support on this host (runs the probe unit only when the static checks pass).
pub fn detect() -> IpFirewall {
    let pid1 = Path::new("/run/systemd/system").is_dir();
    let cgroups = cgroups();
    let probe = (pid1 && cgroups != Cgroups::LegacyOnly).then(run_probe);
    judge(pid1, cgroups, probe.as_ref())
}

/// The decision, from the facts gathered by [`detect`].
pub fn judge(systemd_pid1: bool, cgroups: Cgroups, probe: Option<&ProbeOutcome>) -> IpFirewall {
    if !systemd_pid1 {
        return IpFirewall::Unsupported(
            "systemd is not the init system here (no /run/systemd/system)".into(),
        );
    }
    if cgroups == Cgroups::LegacyOnly {
        return IpFirewall::Unsupported(
            "no cgroup v2 hierarchy is mounted; systemd's IPAddressDeny= needs cgroup v2 and BPF"
                .into(),
        );
    }
    match probe {
        Some(ProbeOutcome::Refused) => IpFirewall::Supported,
        Some(ProbeOutcome::Sent) => IpFirewall::Unsupported(
            "a test unit with IPAddressDeny=any could still send to 127.0.0.1: systemd accepts the \
             setting but cannot attach its BPF program here (bpf() refused, e.g. in a container)"
                .into(),
        ),
        Some(ProbeOutcome::Failed(why)) => {
            IpFirewall::Unsupported(format!("the BPF probe unit could not run: {why}"))
        }
        None => IpFirewall::Unsupported("the BPF probe unit was not run".into()),
    }
}

fn cgroups() -> Cgroups {
    let is_cgroup2 = |p: &str| {
        nix::sys::statfs::statfs(p)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
    };
    if is_cgroup2("/sys/fs/cgroup") {
        Cgroups::Unified
    } else if is_cgroup2("/sys/fs/cgroup/unified") {
        Cgroups::Hybrid
    } else {
        Cgroups::LegacyOnly
    }
}

/// The probe command: a transient unit denied every address sends one datagram to the discard
/// port on loopback.
pub fn probe_command() -> Command {
    let mut cmd = Command::new("systemd-run");
    cmd.args([
        "--wait",
        "--quiet",
        "--pipe",
        "--collect",
        "--property=IPAddressDeny=any",
        "/bin/bash",
        "-c",
        "exec 3<>/dev/udp/127.0.0.1/9 && printf probe >&3",
    ]);
    cmd
}

fn run_probe() -> ProbeOutcome {
    let out = probe_command()
        .stdin(Stdio::null())
        .env("LC_ALL", "C")
        .output();
    match out {
        Err(e) => ProbeOutcome::Failed(format!("systemd-run: {e}")),
        Ok(out) => classify_probe(out.status.success(), &String::from_utf8_lossy(&out.stderr)),
    }
}

/// Reads the probe unit's result.
pub fn classify_probe(success: bool, stderr: &str) -> ProbeOutcome {
    if success {
        ProbeOutcome::Sent
    } else if stderr.contains("Operation not permitted") {
        ProbeOutcome::Refused
    } else {
        let mut why: String = stderr.trim().chars().take(300).collect();
        if why.is_empty() {
            why = "it failed without a message".into();
        }
        ProbeOutcome::Failed(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_in_paths_for_services_and_slices_only() {
        assert_eq!(
            drop_in_path("openclaw-gateway.service").unwrap(),
            Path::new("/etc/systemd/system/openclaw-gateway.service.d/clawgate-egress-lock.conf")
        );
        assert_eq!(
            drop_in_path("user-1001.slice").unwrap(),
            Path::new("/etc/systemd/system/user-1001.slice.d/clawgate-egress-lock.conf")
        );
        for bad in [
            "openclaw",
            ".service",
            "a/b.service",
            "../x.service",
            "x.socket",
            "x y.service",
            "x.service\n",
        ] {
            assert!(drop_in_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_drop_in_denies_everything_but_localhost() {
        let text = drop_in_text();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            ["[Service]", "IPAddressDeny=any", "IPAddressAllow=localhost"]
        );
    }

    #[test]
    fn support_is_judged_from_every_fact() {
        use IpFirewall::*;
        let cases: [(bool, Cgroups, Option<ProbeOutcome>, Option<&str>); 7] = [
            (false, Cgroups::Unified, None, Some("not the init system")),
            (true, Cgroups::LegacyOnly, None, Some("cgroup v2")),
            (true, Cgroups::Unified, Some(ProbeOutcome::Refused), None),
            (true, Cgroups::Hybrid, Some(ProbeOutcome::Refused), None),
            (
                true,
                Cgroups::Hybrid,
                Some(ProbeOutcome::Sent),
                Some("could still send"),
            ),
            (
                true,
                Cgroups::Unified,
                Some(ProbeOutcome::Failed(
                    "Failed to start transient service unit".into(),
                )),
                Some("could not run: Failed to start"),
            ),
            (true, Cgroups::Unified, None, Some("not run")),
        ];
        for (pid1, cg, probe, want) in cases {
            let got = judge(pid1, cg, probe.as_ref());
            match (want, &got) {
                (None, Supported) => {}
                (Some(text), Unsupported(why)) if why.contains(text) => {}
                _ => panic!("{pid1} {cg:?} {probe:?}: {got:?}"),
            }
        }
    }

    #[test]
    fn probe_results_are_read_from_the_unit() {
        assert_eq!(classify_probe(true, ""), ProbeOutcome::Sent);
        assert_eq!(
            classify_probe(
                false,
                "/bin/bash: line 1: printf: write error: Operation not permitted\n"
            ),
            ProbeOutcome::Refused
        );
        assert_eq!(
            classify_probe(
                false,
                "Failed to connect to bus: No such file or directory\n"
            ),
            ProbeOutcome::Failed("Failed to connect to bus: No such file or directory".into())
        );
        assert_eq!(
            classify_probe(false, ""),
            ProbeOutcome::Failed("it failed without a message".into())
        );
    }
}
