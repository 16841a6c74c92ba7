//! Integration tests of clawgate-hub against a loopback HTTPS Hub (hyper + tokio-rustls, a
//! self-signed rcgen certificate). One test binary (`cargo test -p clawgate-hub --test all`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: panics are failures

mod client;
mod enroll;
mod secrets;
mod server;
