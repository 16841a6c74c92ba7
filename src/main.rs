//! `clawgate`: one binary, many subcommands. This file only hardens the process, starts
//! tracing, parses the command line and hands off; the work lives in the library crates.

#![allow(clippy::print_stdout, clippy::print_stderr)] // a CLI: printing is its job

mod cli;
mod policy_cmd;
mod redact_cmd;
mod state;
mod vault_cmd;

use std::process::ExitCode;

use clap::Parser;

/// `EX_USAGE` from sysexits.h: bad command line or configuration.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    // Before anything can hold a secret: no core dumps, not ptrace-able by the same user.
    let hardening = clawgate_vault::hardening::harden_process();
    init_tracing();
    if !hardening.core_dumps_disabled || !hardening.non_dumpable {
        tracing::warn!(?hardening, "Could not fully disable core dumps.");
    }
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EX_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
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
    }
}

fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<cli::UsageError>().is_some() {
        EX_USAGE
    } else {
        1
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CLAWGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("warn,clawgate=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
