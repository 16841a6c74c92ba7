//! `clawgate-devhub`: start the dev Hub, or mint an enrollment token file.
//!
//! ```text
//! clawgate-devhub --state DIR [--listen 127.0.0.1:8443]
//! clawgate-devhub token --state DIR --tenant T --out FILE [--hub URL]
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use clawgate_devhub::{Config, DevHub, Hub, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "clawgate-devhub",
    version,
    about = "Clawgate's dev Hub (hub/openapi.json)"
)]
struct Cli {
    /// State directory: keys, TLS certificate, database (created 0700).
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// `heartbeat_seconds` told at enrollment (5 to 3600).
    #[arg(long, default_value_t = 60)]
    heartbeat_seconds: u32,
    /// Longest event long-poll held, seconds (0 to 60; lower it for API fuzzers).
    #[arg(long, default_value_t = 60)]
    max_wait: u64,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Mint a one-time enrollment token and write its token file (mode 0600).
    Token {
        /// Tenant the appliance joins.
        #[arg(long)]
        tenant: String,
        /// The token file to write (refused if it exists).
        #[arg(long)]
        out: PathBuf,
        /// Hub URL written in the file (default: the URL of the last start of this state dir).
        #[arg(long)]
        hub: Option<String>,
    },
}

const URL_FILE: &str = "url";

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DEVHUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,clawgate_devhub=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "clawgate-devhub: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(state) = cli.state.clone() else {
        anyhow::bail!("--state DIR is required");
    };
    if !(5..=3600).contains(&cli.heartbeat_seconds) {
        anyhow::bail!("--heartbeat-seconds must be within 5..=3600");
    }
    if cli.max_wait > 60 {
        anyhow::bail!("--max-wait must be within 0..=60");
    }
    let settings = Settings {
        heartbeat_seconds: cli.heartbeat_seconds,
        max_wait_secs: cli.max_wait,
        ..Settings::default()
    };
    match cli.command {
        Some(Command::Token { tenant, out, hub }) => {
            let url = match hub {
                Some(u) => u,
                None => clawgate_protocol::io::read_capped(&state.join(URL_FILE), 4096)
                    .map(|s| String::from_utf8_lossy(&s).trim().to_owned())
                    .with_context(|| {
                        format!(
                            "no --hub given and {} has no record of a start (start the dev Hub first)",
                            state.display()
                        )
                    })?,
            };
            let hub = Hub::open(&state, settings)?;
            hub.write_token_file(&tenant, &url, &out)?;
            writeln!(
                std::io::stdout(),
                "wrote {} (mode 0600): a one-time token for tenant {tenant} at {url}\n\
                 enroll with: clawgate enroll --hub {url} --token-file {}",
                out.display(),
                out.display()
            )?;
            Ok(())
        }
        None => serve(state, cli.listen, settings),
    }
}

fn serve(state: PathBuf, listen: SocketAddr, settings: Settings) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async move {
        let hub = DevHub::start(Config {
            state_dir: state.clone(),
            listen,
            settings,
        })
        .await?;
        let url = hub.url();
        clawgate_devhub::keys::write_atomic(
            &state.join(URL_FILE),
            format!("{url}\n").as_bytes(),
            0o600,
        )?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "Clawgate dev Hub listening on {url}")?;
        writeln!(out, "  TLS SPKI pin (sha256 hex): {}", hub.spki_pin_hex())?;
        writeln!(
            out,
            "  Chromium: --ignore-certificate-errors-spki-list={}",
            hub.tls().pin_base64()
        )?;
        for k in hub.signing_keys()? {
            writeln!(out, "  signing key {}: {}", k.kid, k.public_key)?;
        }
        writeln!(
            out,
            "  operator page: {url}/ui#token=<the token in {}>",
            state.join("operator-token").display()
        )?;
        writeln!(
            out,
            "  enrollment token: clawgate-devhub token --state {} --tenant TENANT --out token.json",
            state.display()
        )?;
        drop(out);
        std::future::pending::<()>().await;
        Ok::<(), anyhow::Error>(())
    })
}
