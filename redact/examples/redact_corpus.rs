//! Writes the generated redaction corpus of `tests/recall.rs` to disk, for
//! `scripts/redact-report` (which runs `clawgate scan --json` on every document):
//!
//! ```text
//! cargo run -p clawgate-redact --example redact_corpus -- OUT_DIR [--docs N] [--seed S] [--vault N]
//! scripts/redact-report OUT_DIR
//! ```
//!
//! Layout: `OUT_DIR/docs/<name>.txt` (one document each), `OUT_DIR/labels.json` (the planted
//! spans; format in `scripts/redact-report`), `OUT_DIR/vault.json` (`{"name": "value"}`: the
//! generated, fake vault values the report loads into a scratch vault).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

#[path = "../tests/corpusgen/mod.rs"]
mod corpusgen;

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    let (mut docs, mut seed, mut vault_len) = (3000usize, 20_260_501u64, 240usize);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--docs" => docs = args.next().ok_or("--docs N")?.parse()?,
            "--seed" => seed = args.next().ok_or("--seed S")?.parse()?,
            "--vault" => vault_len = args.next().ok_or("--vault N")?.parse()?,
            "-h" | "--help" => {
                println!("usage: redact_corpus OUT_DIR [--docs N] [--seed S] [--vault N]");
                return Ok(());
            }
            _ if out.is_none() => out = Some(PathBuf::from(a)),
            _ => return Err(format!("unexpected argument {a:?}").into()),
        }
    }
    let out = out.ok_or("usage: redact_corpus OUT_DIR [--docs N] [--seed S] [--vault N]")?;
    let vault = corpusgen::vault(seed, vault_len);
    let corpus = corpusgen::corpus(seed, docs, &vault);
    std::fs::create_dir_all(out.join("docs"))?;
    for d in &corpus {
        std::fs::write(out.join("docs").join(format!("{}.txt", d.name)), &d.text)?;
    }
    let labels = corpusgen::labels_json(&corpus, seed);
    std::fs::write(
        out.join("labels.json"),
        serde_json::to_string_pretty(&labels)?,
    )?;
    let values: serde_json::Map<String, serde_json::Value> = vault
        .entries
        .iter()
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
        .collect();
    std::fs::write(
        out.join("vault.json"),
        serde_json::to_string_pretty(&values)?,
    )?;
    let bytes: usize = corpus.iter().map(|d| d.text.len()).sum();
    eprintln!(
        "wrote {} documents ({bytes} bytes), labels.json and vault.json to {}",
        corpus.len(),
        out.display()
    );
    Ok(())
}
