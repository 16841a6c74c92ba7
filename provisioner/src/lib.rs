//! `clawgate-provisioner`: the steps that prepare a host for Clawgate, each idempotent and safe
//! to re-run. The `clawgate provision …` subcommands call into here.
//!
//! - [`firewall`]: the egress lock, an nftables table that lets the agent's user reach only the
//!   proxy's loopback listeners, the optional systemd `IPAddressDeny=` layer, and the lock's
//!   status file ([`firewall::status`]) through which the unprivileged daemon learns its state;
//! - [`secrets_file`]: the platform's one-time secrets file (format, checks, destruction);
//! - [`daemon_config`]: the edits provisioning makes to `/etc/clawgate/clawgate.toml`;
//! - [`journal`]: the progress journal that lets a re-run report what an interrupted run did.
//!
//! ```
//! use clawgate_provisioner::firewall::{Agent, Spec};
//!
//! let agent = Agent::new("openclaw", 1001)?;
//! let spec = Spec::new(agent, &["127.0.0.1:8787".parse()?, "127.0.0.1:8788".parse()?])?;
//! let file = spec.ruleset();
//! assert!(file.contains("meta skuid 1001 jump agent_out"));
//! assert!(file.contains("delete table inet clawgate_egress"));
//! assert!(!file.contains("flush ruleset"));
//! // Root is never the agent.
//! assert!(Agent::new("root", 0).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod daemon_config;
pub mod error;
pub mod firewall;
pub mod journal;
pub mod secrets_file;

pub use error::{Error, Result};
