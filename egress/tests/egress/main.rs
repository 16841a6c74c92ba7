//! The egress proxy end to end on 127.0.0.1: a real hyper client → the proxy → the fake
//! upstream (`fake.rs`), which speaks each provider's wire format.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod fake;
mod faults;
mod harness;
mod redaction;
mod refusals;
mod streams;
