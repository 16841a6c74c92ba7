//! Any text as a policy file: loading either succeeds or returns an error, never panics.
#![no_main]
use clawgate_policies::Policy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Policy::from_sources(&[("fuzz.toml", text)]);
    }
});
