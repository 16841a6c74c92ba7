//! End-to-end tests of the `clawgate` binary, built as one test binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)] // test code

mod capture;
mod common;
mod crash;
mod devhub;
mod egress;
mod hub;
mod hubwire;
mod leaks;
mod openapi;
mod policy_cli;
mod provision;
mod provision_steps;
mod redact_cli;
mod serve;
mod vault_cli;
