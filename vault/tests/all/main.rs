//! The vault's integration tests, built as one binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)] // test code: panics are failures, files are small

mod bad_files;
mod common;
mod format;
mod kat;
mod model;
mod plaintext;
mod rollback;
mod rotation;
mod tamper;
