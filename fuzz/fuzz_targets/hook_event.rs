//! Any JSON as a `before_tool_call` event: parsed and classified, or refused, never a panic.
#![no_main]
use std::sync::OnceLock;

use clawgate_policies::{Policy, Tier, ToolCall};
use libfuzzer_sys::fuzz_target;

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::default_policy().expect("the default policy loads"))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(call) = ToolCall::from_hook_event(&value) {
            let _ = policy().decide(&call, Tier::Supervised);
        }
    }
});
