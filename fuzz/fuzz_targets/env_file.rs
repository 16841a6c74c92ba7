//! Any text as a `.env` file: parsed or refused with a line number, never a panic, and an error
//! never quotes the input.
#![no_main]
use clawgate_vault::envfile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = envfile::parse(std::path::Path::new("fuzz.env"), text);
    }
});
