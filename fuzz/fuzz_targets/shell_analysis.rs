//! Any text as an `exec` command: classification never panics and always yields a class.
#![no_main]
use std::sync::OnceLock;

use clawgate_policies::Policy;
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::default_policy().expect("the default policy loads"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(command) = std::str::from_utf8(data) {
        let verdict = policy().classify_shell(command);
        assert!(!verdict.rule().is_empty());
    }
});
