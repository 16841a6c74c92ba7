//! `clawgate`: one binary, many subcommands. This file only hardens the process, starts
//! tracing, parses the command line and hands off; the work lives in the library crates.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI: printing is its job

mod cli;
mod daemon_cmd;
mod doctor_cmd;
mod egress_cmd;
mod policy_cmd;
mod provision_cmd;
mod provision_steps;
mod redact_cmd;
mod state;
mod vault_cmd;

use std::process::ExitCode;

use clap::Parser;
use clawgate_wrapper::LogTarget;

/// `EX_USAGE` from sysexits.h: bad command line or configuration.
const EX_USAGE: u8 = 64;
/// `EX_TEMPFAIL`: `serve` stopped because the Hub asked for a restart (systemd's
/// `Restart=on-failure` starts it again).
const EX_TEMPFAIL: u8 = 75;

fn main() -> ExitCode {
    // Before anything can hold a secret: no core dumps, not ptrace-able by the same user.
    let hardening = clawgate_vault::hardening::harden_process();
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let target = match &cli.command {
        cli::Command::Serve(args) => daemon_cmd::log_target(
            &cli.global,
            &clawgate_protocol::env::ProcessEnv,
            args.config.as_deref(),
        ),
        _ => LogTarget::Stderr,
    };
    init_logging(target);
    if !hardening.core_dumps_disabled || !hardening.non_dumpable {
        tracing::warn!(?hardening, "Could not fully disable core dumps.");
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line. No error type in the workspace
            // carries a secret value, so this is safe to show.
            eprintln!("clawgate: error: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let env = clawgate_protocol::env::ProcessEnv;
    match cli.command {
        cli::Command::Vault(cmd) => vault_cmd::run(&cli.global, &env, cmd),
        cli::Command::Keygen(args) => policy_cmd::keygen(&args),
        cli::Command::Policy(cmd) => policy_cmd::run(cmd),
        cli::Command::Classify(args) => policy_cmd::classify(&args),
        cli::Command::Scan(args) => redact_cmd::scan(&cli.global, &env, &args),
        cli::Command::Redact(args) => redact_cmd::redact(&cli.global, &env, &args),
        cli::Command::Serve(args) => daemon_cmd::serve(&cli.global, &env, args.config),
        cli::Command::Enroll(args) => daemon_cmd::enroll(&cli.global, &env, &args),
        cli::Command::Validate(args) => daemon_cmd::validate(&cli.global, &env, &args.config),
        cli::Command::Approvals(cmd) => daemon_cmd::approvals(&cli.global, &env, cmd),
        cli::Command::Audit(cmd) => daemon_cmd::audit(&cli.global, &env, cmd),
        cli::Command::Openclaw(cmd) => daemon_cmd::openclaw(&cli.global, &env, cmd),
        cli::Command::Egress(cmd) => egress_cmd::egress(&cli.global, &env, cmd),
        cli::Command::Usage(cmd) => egress_cmd::usage(&cli.global, &env, cmd),
        cli::Command::Provision(cmd) => provision_cmd::run(&cli.global, &env, cmd),
        cli::Command::Doctor(args) => doctor_cmd::doctor(&cli.global, &env, &args),
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<cli::UsageError>().is_some() {
        EX_USAGE
    } else if e.downcast_ref::<daemon_cmd::RestartRequested>().is_some() {
        EX_TEMPFAIL
    } else {
        1
    }
}

/// Logs go to journald when asked (or, on `auto`, when systemd connected our stderr to the
/// journal), else to stderr. systemd-journal-logger is a `log` backend: with no tracing
/// subscriber installed, tracing's `log` feature forwards every event to it. It fails when
/// journald is absent; we then fall back to stderr and say so.
fn init_logging(target: LogTarget) {
    let journald = match target {
        LogTarget::Stderr => false,
        LogTarget::Journald => true,
        LogTarget::Auto => std::env::var_os("JOURNAL_STREAM").is_some(),
    };
    if journald {
        let installed = systemd_journal_logger::JournalLog::new()
            .map_err(|e| e.to_string())
            .and_then(|j| j.install().map_err(|e| e.to_string()));
        match installed {
            Ok(()) => {
                log::set_max_level(log::LevelFilter::Info);
                return;
            }
            Err(e) => eprintln!("clawgate: journald is not available ({e}); logging to stderr"),
        }
    }
    init_tracing();
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CLAWGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,clawgate=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
