//! Checking a signed command from the Hub: a pure function of the command, the keyset, this
//! appliance's identity and the time. Only three commands exist, and none takes an argument:
//! the Hub can never make an appliance run code. Idempotency by command id is the caller's, with
//! the outbox's command ledger ([`crate::outbox::Outbox::begin_command`], then
//! [`crate::outbox::Outbox::finish_command`]).

use crate::decision::{MAX_SKEW_SECS, Me};
use crate::protocol::SignedCommand;
use crate::signing::{SignatureError, escape, valid_id, verify};

/// Oldest command still run, seconds: a command delayed longer (say, delivered after a long
/// outage) is refused rather than acted on out of context.
pub const MAX_COMMAND_AGE_SECS: i64 = 24 * 3600;

/// The commands an appliance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandName {
    /// Re-read configuration and policy (the SIGHUP path).
    Reload,
    /// Re-fetch the newest bundle, re-check the OpenClaw configuration and the egress firewall.
    Reconcile,
    /// Restart the daemon.
    Restart,
}

impl CommandName {
    /// Parses one of the three names; anything else is `None`.
    pub fn parse(name: &str) -> Option<CommandName> {
        match name {
            "reload" => Some(CommandName::Reload),
            "reconcile" => Some(CommandName::Reconcile),
            "restart" => Some(CommandName::Restart),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandName::Reload => "reload",
            CommandName::Reconcile => "reconcile",
            CommandName::Restart => "restart",
        }
    }
}

/// A command that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedCommand {
    /// Its id.
    pub command_id: String,
    /// What to do.
    pub name: CommandName,
    /// Issued, Unix seconds (Hub clock).
    pub issued_at: i64,
    /// Signing key.
    pub kid: String,
}

/// Why a command was refused. Each variant is one audited reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandRejection {
    /// The signature or payload is malformed.
    #[error("malformed command: {0}")]
    Malformed(String),
    /// Signed by a key that is not pinned.
    #[error("command signed by key `{0}`, which is not pinned")]
    UnknownKid(String),
    /// The signature does not verify.
    #[error("command signature by key `{0}` does not verify (forged or altered)")]
    BadSignature(String),
    /// For another tenant.
    #[error("command is for tenant `{0}`")]
    WrongTenant(String),
    /// For another appliance.
    #[error("command is for appliance `{0}`")]
    WrongAppliance(String),
    /// Not one of the three commands.
    #[error("unknown command `{0}`: only reload, reconcile and restart exist")]
    UnknownCommand(String),
    /// Issued more than the allowed skew in our future, or too long ago.
    #[error("command issued at {issued_at} is outside the accepted window (now {now})")]
    Stale {
        /// Issued.
        issued_at: i64,
        /// Our now.
        now: i64,
    },
}

impl CommandRejection {
    /// A stable code for the audit log, distinct per variant.
    pub fn code(&self) -> &'static str {
        match self {
            CommandRejection::Malformed(_) => "malformed",
            CommandRejection::UnknownKid(_) => "unknown_kid",
            CommandRejection::BadSignature(_) => "bad_signature",
            CommandRejection::WrongTenant(_) => "wrong_tenant",
            CommandRejection::WrongAppliance(_) => "wrong_appliance",
            CommandRejection::UnknownCommand(_) => "unknown_command",
            CommandRejection::Stale { .. } => "stale",
        }
    }
}

/// Checks `signed`: signature, tenant, appliance, id grammar, name, and `issued_at` within
/// [`MAX_SKEW_SECS`] ahead and [`MAX_COMMAND_AGE_SECS`] behind `now`.
pub fn check(
    signed: &SignedCommand,
    keyset: &crate::signing::Keyset,
    me: Me<'_>,
    now: i64,
) -> Result<AcceptedCommand, CommandRejection> {
    let c = verify(signed, keyset).map_err(|e| match e {
        SignatureError::UnknownKid(kid) => CommandRejection::UnknownKid(kid),
        SignatureError::BadSignature(kid) => CommandRejection::BadSignature(kid),
        SignatureError::Malformed(why) => CommandRejection::Malformed(why),
    })?;
    if c.tenant_id != me.tenant_id {
        return Err(CommandRejection::WrongTenant(escape(&c.tenant_id)));
    }
    if c.appliance_id != me.appliance_id {
        return Err(CommandRejection::WrongAppliance(escape(&c.appliance_id)));
    }
    if !valid_id(&c.command_id) {
        return Err(CommandRejection::Malformed(format!(
            "command id `{}` is not [A-Za-z0-9._:-]{{1,64}}",
            escape(&c.command_id)
        )));
    }
    let name = CommandName::parse(&c.name)
        .ok_or_else(|| CommandRejection::UnknownCommand(escape(&c.name)))?;
    if c.issued_at > now.saturating_add(MAX_SKEW_SECS)
        || c.issued_at < now.saturating_sub(MAX_COMMAND_AGE_SECS)
    {
        return Err(CommandRejection::Stale {
            issued_at: c.issued_at,
            now,
        });
    }
    Ok(AcceptedCommand {
        command_id: c.command_id.clone(),
        name,
        issued_at: c.issued_at,
        kid: c.kid.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CommandPayload;
    use crate::signing::sign;
    use crate::signing::tests::{vector_key, vector_keyset};

    const NOW: i64 = 1_795_000_400;

    fn payload() -> CommandPayload {
        CommandPayload {
            tenant_id: "tenant-example".into(),
            appliance_id: "appl-0001".into(),
            command_id: "cmd_01J9Z3K7".into(),
            name: "reconcile".into(),
            issued_at: NOW,
            kid: "hub-sign-2026-01".into(),
        }
    }

    fn run_with(
        f: impl FnOnce(&mut CommandPayload),
        signer: &str,
        now: i64,
    ) -> Result<AcceptedCommand, CommandRejection> {
        let mut p = payload();
        f(&mut p);
        let signed = sign(&p, &vector_key(signer)).unwrap();
        check(
            &signed,
            &vector_keyset(),
            Me {
                tenant_id: "tenant-example",
                appliance_id: "appl-0001",
            },
            now,
        )
    }

    #[test]
    fn the_three_commands_are_accepted() {
        for name in ["reload", "reconcile", "restart"] {
            let c = run_with(|p| p.name = name.into(), "hub-sign-2026-01", NOW).unwrap();
            assert_eq!(c.name.as_str(), name);
            assert_eq!(c.command_id, "cmd_01J9Z3K7");
        }
    }

    #[test]
    fn every_refusal_has_its_own_reason() {
        let k1 = "hub-sign-2026-01";
        type Change = Box<dyn FnOnce(&mut CommandPayload)>;
        let cases: Vec<(&str, Change, &str, i64, &str)> = vec![
            (
                "forged",
                Box::new(|_| {}),
                "hub-sign-2026-07",
                NOW,
                "bad_signature",
            ),
            (
                "unpinned kid",
                Box::new(|p| p.kid = "hub-sign-2026-07".into()),
                "hub-sign-2026-07",
                NOW,
                "unknown_kid",
            ),
            (
                "other tenant",
                Box::new(|p| p.tenant_id = "t2".into()),
                k1,
                NOW,
                "wrong_tenant",
            ),
            (
                "other appliance",
                Box::new(|p| p.appliance_id = "a2".into()),
                k1,
                NOW,
                "wrong_appliance",
            ),
            (
                "shell",
                Box::new(|p| p.name = "exec".into()),
                k1,
                NOW,
                "unknown_command",
            ),
            (
                "upper case",
                Box::new(|p| p.name = "RESTART".into()),
                k1,
                NOW,
                "unknown_command",
            ),
            (
                "bad id",
                Box::new(|p| p.command_id = "a b".into()),
                k1,
                NOW,
                "malformed",
            ),
            ("future", Box::new(|_| {}), k1, NOW - 301, "stale"),
            (
                "old",
                Box::new(|_| {}),
                k1,
                NOW + MAX_COMMAND_AGE_SECS + 1,
                "stale",
            ),
        ];
        for (name, change, signer, now, want) in cases {
            let err = run_with(change, signer, now).expect_err(name);
            assert_eq!(err.code(), want, "{name}: {err}");
        }
        // Boundaries are inclusive.
        run_with(|_| {}, k1, NOW - 300).unwrap();
        run_with(|_| {}, k1, NOW + MAX_COMMAND_AGE_SECS).unwrap();
    }
}
