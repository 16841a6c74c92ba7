//! Model-based test: the vault behaves like a `HashMap<name, (value, version)>` over random
//! sequences of put, remove, rotate (whole or interrupted), rekey and reopen.

use std::collections::HashMap;

use clawgate_vault::{Error, KdfParams, KeySource, Vault};
use proptest::prelude::*;

use crate::common::{Fixture, any_scope, name, secret};

#[derive(Debug, Clone)]
enum Op {
    Put(usize, String),
    Remove(usize),
    Rotate,
    /// Begin a rotation and re-seal only `n` records, as if the process died.
    RotatePartly(usize),
    Rekey,
    Reopen,
}

const NAMES: [&str; 5] = ["alpha", "beta", "gamma.key", "delta-1", "EPSILON_2"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..NAMES.len(), "[ -~]{1,40}").prop_map(|(i, v)| Op::Put(i, v)),
        2 => (0..NAMES.len()).prop_map(Op::Remove),
        1 => Just(Op::Rotate),
        1 => (0..4usize).prop_map(Op::RotatePartly),
        1 => Just(Op::Rekey),
        2 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    live: HashMap<&'static str, (String, i64)>,
    last_version: HashMap<&'static str, i64>,
}

fn check(vault: &Vault, model: &Model) -> Result<(), TestCaseError> {
    let listed: HashMap<String, i64> = vault
        .list()
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.version))
        .collect();
    let expected: HashMap<String, i64> = model
        .live
        .iter()
        .map(|(k, (_, v))| (k.to_string(), *v))
        .collect();
    prop_assert_eq!(listed, expected);
    for n in NAMES {
        match (model.live.get(n), vault.get(&name(n))) {
            (Some((value, _)), Ok(got)) => prop_assert_eq!(got.expose(), value.as_str()),
            (None, Err(Error::NotFound(_))) => {}
            (want, got) => prop_assert!(false, "{n}: model {want:?}, vault {got:?}"),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn vault_matches_a_hashmap(ops in proptest::collection::vec(op(), 1..24)) {
        let (fx, vault) = Fixture::new();
        let keys = [fx.key.clone(), fx.other_key("b.key")];
        let mut key_index = 0;
        let mut vault = Some(vault);
        let mut model = Model::default();
        for op in ops {
            let v = vault.as_ref().unwrap();
            match op {
                Op::Put(i, value) => {
                    let version = v.put(&name(NAMES[i]), &secret(&value), &any_scope()).unwrap();
                    let expected = model.last_version.get(NAMES[i]).copied().unwrap_or(0) + 1;
                    prop_assert_eq!(version, expected);
                    model.last_version.insert(NAMES[i], version);
                    model.live.insert(NAMES[i], (value, version));
                }
                Op::Remove(i) => match (v.remove(&name(NAMES[i])), model.live.remove(NAMES[i])) {
                    (Ok(()), Some(_)) | (Err(Error::NotFound(_)), None) => {}
                    (got, want) => prop_assert!(false, "remove {}: {got:?} vs {want:?}", NAMES[i]),
                },
                Op::Rotate => {
                    v.rotate(2, |_, _| {}).unwrap();
                    prop_assert_eq!(v.verify().unwrap().pending_reseal, 0);
                }
                Op::RotatePartly(n) => {
                    v.begin_rotation().unwrap();
                    if n > 0 {
                        v.reseal_batch(n).unwrap();
                    }
                }
                Op::Rekey => {
                    key_index = 1 - key_index;
                    v.rekey(&keys[key_index], KdfParams::default()).unwrap();
                }
                Op::Reopen => {
                    drop(vault.take());
                    vault = Some(Vault::open(&fx.db, &keys[key_index]).unwrap());
                    let other: &KeySource = &keys[1 - key_index];
                    prop_assert!(matches!(Vault::open(&fx.db, other), Err(Error::WrongKey)));
                }
            }
            check(vault.as_ref().unwrap(), &model)?;
        }
        let report = vault.as_ref().unwrap().verify().unwrap();
        prop_assert_eq!(report.secrets, model.live.len());
    }
}
