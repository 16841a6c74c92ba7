//! `clawgate-provisioner`: the steps that prepare a host for Clawgate, each idempotent and safe
//! to re-run. The `clawgate provision …` subcommands call into here.
//!
//! [`firewall`]: the egress lock, an nftables table that lets the agent's user reach only the
//! proxy's loopback listeners, and the optional systemd `IPAddressDeny=` layer.
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

pub mod error;
pub mod firewall;

pub use error::{Error, Result};
