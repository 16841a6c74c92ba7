//! Any bytes as a signed bundle: refused with an error (a forgery cannot be produced by fuzzing),
//! never a panic.
#![no_main]
use std::sync::OnceLock;

use clawgate_policies::bundle::{self, BundleSigner, Expectations, TrustStore};
use libfuzzer_sys::fuzz_target;

fn trust() -> &'static TrustStore {
    static TRUST: OnceLock<TrustStore> = OnceLock::new();
    TRUST.get_or_init(|| {
        let signer = BundleSigner::from_seed("fuzz", &[1; 32]).expect("valid key id");
        TrustStore::from_toml(&signer.trust_entry()).expect("valid trust entry")
    })
}

fuzz_target!(|data: &[u8]| {
    let expect = Expectations { tenant_id: "t", high_water: 0, allow_current: false, now: 1_800_000_000 };
    assert!(bundle::verify(data, trust(), &expect).is_err());
});
