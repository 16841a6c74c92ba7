//! The SECRET_REF scanner on any text: ranges stay on character boundaries, replacement keeps
//! everything outside the references.
#![no_main]
use clawgate_protocol::secret_ref::{RefToken, replace_refs, scan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for token in scan(text) {
            let (RefToken::Ref { range, .. } | RefToken::Malformed { range }) = token;
            assert!(text.is_char_boundary(range.start) && text.is_char_boundary(range.end));
        }
        let replaced = replace_refs(text, |_| String::new());
        assert!(replaced.len() <= text.len());
    }
});
