//! Tokens whose prefix names the service that issued them (`gsk_…` is a Groq key, `dckr_pat_…`
//! a Docker Hub token): found wherever they stand, in prose and under names that say nothing
//! (`export X=…`), like the GitHub and Stripe formats in [`super::default_rules`].
//!
//! Each prefix is a keyword of its own, so a rule costs nothing until its prefix occurs, and
//! every pattern starts with its prefix (tried anchored at the hit). A body must look random
//! ([`random_body`]): the fixed shapes below already exclude words, this excludes the
//! placeholders documentation fills them with (`sk-or-v1-0000…`, `fw_abcdefghijklmnopqrstuvwx`).
//! Formats that end in a byte that may also continue a word (`-`, `_`) end at the first byte
//! that cannot be in the token instead of at `\b`.

use super::{Candidate, RuleSpec, rule, token_like};

/// The prefixed token rules: LLM providers first (what this proxy carries), then the services
/// an agent's tools and deployments hold tokens for.
pub(super) fn rules() -> Vec<RuleSpec> {
    PREFIXED
        .iter()
        .map(|&(id, keywords, pattern, fwd)| RuleSpec {
            accept: Some(random_body),
            ..rule(id, keywords, pattern, BACK, fwd)
        })
        .collect()
}

/// Bytes before a keyword where a token may start: only Terraform's (14 bytes before
/// `.atlasv1.`); the others start at their keyword and are tried anchored there.
const BACK: usize = 16;

/// (rule id, keywords, pattern, bytes the token may take after its keyword starts).
const PREFIXED: &[(&str, &[&str], &str, usize)] = &[
    // LLM providers and the tools agents call.
    (
        "openrouter-api-key",
        &["sk-or-v1-"],
        r"\b(sk-or-v1-[0-9a-f]{64})\b",
        80,
    ),
    (
        "groq-api-key",
        &["gsk_"],
        r"\b(gsk_[A-Za-z0-9]{48,56})\b",
        64,
    ),
    (
        "xai-api-key",
        &["xai-"],
        r"\b(xai-[A-Za-z0-9]{70,90})\b",
        100,
    ),
    (
        "perplexity-api-key",
        &["pplx-"],
        r"\b(pplx-[A-Za-z0-9]{40,56})\b",
        64,
    ),
    (
        "replicate-api-token",
        &["r8_"],
        r"\b(r8_[A-Za-z0-9]{37,40})\b",
        48,
    ),
    (
        "fireworks-api-key",
        &["fw_"],
        r"\b(fw_[A-Za-z0-9]{20,40})\b",
        48,
    ),
    (
        "cerebras-api-key",
        &["csk-"],
        r"\b(csk-[a-z0-9]{40,56})\b",
        64,
    ),
    (
        "nvidia-api-key",
        &["nvapi-"],
        r"\b(nvapi-[A-Za-z0-9_\-]{60,70})(?:[^A-Za-z0-9_\-]|$)",
        80,
    ),
    (
        "langsmith-api-key",
        &["lsv2_pt_", "lsv2_sk_"],
        r"\b(lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10})\b",
        56,
    ),
    (
        "langfuse-secret-key",
        &["sk-lf-"],
        r"\b(sk-lf-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b",
        48,
    ),
    (
        "together-api-key",
        &["tgp_v1_"],
        r"\b(tgp_v1_[A-Za-z0-9_\-]{40,50})(?:[^A-Za-z0-9_\-]|$)",
        64,
    ),
    (
        "pinecone-api-key",
        &["pcsk_"],
        r"\b(pcsk_[A-Za-z0-9_]{50,100})\b",
        110,
    ),
    (
        "tavily-api-key",
        &["tvly-"],
        r"\b(tvly-(?:dev-|prod-)?[A-Za-z0-9]{32})\b",
        48,
    ),
    ("firecrawl-api-key", &["fc-"], r"\b(fc-[0-9a-f]{32})\b", 40),
    ("e2b-api-key", &["e2b_"], r"\b(e2b_[0-9a-f]{40})\b", 48),
    (
        "browserbase-api-key",
        &["bb_live_"],
        r"\b(bb_live_[A-Za-z0-9_\-]{20,40})(?:[^A-Za-z0-9_\-]|$)",
        56,
    ),
    ("elevenlabs-api-key", &["sk_"], r"\b(sk_[0-9a-f]{48})\b", 56),
    // Source hosting, CI and deployment.
    (
        "docker-hub-token",
        &["dckr_pat_", "dckr_oat_"],
        r"\b(dckr_(?:pat|oat)_[A-Za-z0-9_\-]{27,40})(?:[^A-Za-z0-9_\-]|$)",
        56,
    ),
    (
        "digitalocean-token",
        &["dop_v1_", "doo_v1_", "dor_v1_"],
        r"\b(do[opr]_v1_[0-9a-f]{64})\b",
        80,
    ),
    (
        "heroku-api-key",
        &["hrku-"],
        r"\b(HRKU-[A-Za-z0-9_\-]{60})(?:[^A-Za-z0-9_\-]|$)",
        72,
    ),
    (
        "flyio-token",
        &["fo1_", "flyv1 fm"],
        r"\b(fo1_[A-Za-z0-9_\-]{43}|FlyV1 fm[12][ar]?_[A-Za-z0-9+/=_,\-]{50,})(?:[^A-Za-z0-9_\-]|$)",
        2_020,
    ),
    (
        "netlify-token",
        &["nfp_"],
        r"\b(nfp_[A-Za-z0-9]{36,40})\b",
        48,
    ),
    (
        "render-api-key",
        &["rnd_"],
        r"\b(rnd_[A-Za-z0-9]{32})\b",
        40,
    ),
    (
        "pulumi-access-token",
        &["pul-"],
        r"\b(pul-[0-9a-f]{40})\b",
        48,
    ),
    (
        "buildkite-token",
        &["bkua_"],
        r"\b(bkua_[0-9a-f]{40})\b",
        48,
    ),
    (
        "databricks-token",
        &["dapi"],
        r"\b(dapi[0-9a-f]{32}(?:-[0-9])?)\b",
        40,
    ),
    ("neon-api-key", &["napi_"], r"\b(napi_[a-z0-9]{64})\b", 72),
    (
        "alibaba-access-key-id",
        &["ltai"],
        r"\b(LTAI[A-Za-z0-9]{12,20})\b",
        28,
    ),
    (
        "terraform-cloud-token",
        &[".atlasv1."],
        r"\b([A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_\-=]{60,70})(?:[^A-Za-z0-9_\-=]|$)",
        80,
    ),
    (
        "hashicorp-vault-token",
        &["hvs.", "hvb."],
        r"\b(hv[sb]\.[A-Za-z0-9_\-]{90,})(?:[^A-Za-z0-9_\-]|$)",
        410,
    ),
    (
        "doppler-token",
        &["dp."],
        // (A service token names its config: `dp.st.prd.…`.)
        r"\b(dp\.(?:pt|st|sa|ct|scim|audit)\.(?:[a-z0-9_\-]{2,40}\.)?[A-Za-z0-9]{40,44})\b",
        100,
    ),
    (
        "onepassword-service-token",
        &["ops_eyj"],
        r"\b(ops_eyJ[A-Za-z0-9+/=_\-]{100,})",
        2_010,
    ),
    (
        "jfrog-api-key",
        &["akcp"],
        r"\b(AKCp[A-Za-z0-9]{69,80})\b",
        88,
    ),
    (
        "rubygems-api-key",
        &["rubygems_"],
        r"\b(rubygems_[0-9a-f]{48})\b",
        60,
    ),
    (
        "age-secret-key",
        &["age-secret-key-1"],
        r"\b(AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})\b",
        76,
    ),
    // Observability, databases and SaaS APIs.
    (
        "sentry-token",
        &["sntry"],
        r"\b(sntryu_[0-9a-f]{64}|sntrys_eyJ[A-Za-z0-9+/=_\-]{60,})",
        410,
    ),
    (
        "grafana-token",
        &["glsa_", "glc_"],
        r"\b(glsa_[A-Za-z0-9]{32}_[0-9a-f]{8}|glc_[A-Za-z0-9+/]{32,}={0,2})",
        410,
    ),
    ("new-relic-key", &["nrak-"], r"\b(NRAK-[A-Z0-9]{27})\b", 36),
    (
        "postman-api-key",
        &["pmak-"],
        r"\b(PMAK-[0-9a-f]{24}-[0-9a-f]{34})\b",
        68,
    ),
    (
        "posthog-personal-key",
        &["phx_"],
        r"\b(phx_[A-Za-z0-9]{40,50})\b",
        56,
    ),
    (
        "supabase-key",
        &["sbp_", "sb_secret_"],
        r"\b(sbp_[0-9a-f]{40}|sb_secret_[A-Za-z0-9_\-]{20,60})(?:[^A-Za-z0-9_\-]|$)",
        72,
    ),
    (
        "planetscale-token",
        &["pscale_"],
        r"\b(pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_\-.]{32,64})(?:[^A-Za-z0-9_\-.]|$)",
        80,
    ),
    (
        "atlassian-api-token",
        &["atatt3"],
        r"\b(ATATT3[A-Za-z0-9_\-=]{150,})(?:[^A-Za-z0-9_\-=]|$)",
        260,
    ),
    (
        "linear-api-key",
        &["lin_api_"],
        r"\b(lin_api_[A-Za-z0-9]{40})\b",
        52,
    ),
    (
        "notion-token",
        // (`secret_` is the older integration token's prefix: 43 random bytes follow.)
        &["ntn_", "secret_"],
        r"\b(ntn_[A-Za-z0-9]{40,50}|secret_[A-Za-z0-9]{43})\b",
        56,
    ),
    (
        "figma-token",
        &["figd_"],
        r"\b(figd_[A-Za-z0-9_\-]{40})(?:[^A-Za-z0-9_\-]|$)",
        48,
    ),
    (
        "shopify-token",
        &["shp"],
        r"\b(shp(?:at|ss|ca|pa)_[0-9a-fA-F]{32})\b",
        40,
    ),
    (
        "square-token",
        // (`EAAA…` is a production access token, 64 bytes.)
        &["sq0atp-", "sq0csp-", "eaaa"],
        r"\b(sq0(?:atp|csp)-[A-Za-z0-9_\-]{22,43}|EAAA[A-Za-z0-9_\-]{60})(?:[^A-Za-z0-9_\-]|$)",
        72,
    ),
    (
        "facebook-access-token",
        &["eaa"],
        r"\b(EAA[A-Za-z0-9]{100,400})\b",
        410,
    ),
    (
        "dropbox-token",
        // (Short-lived tokens, `sl.` and the newer `sl.u.`.)
        &["sl."],
        r"\b(sl\.(?:u\.)?[A-Za-z0-9_\-]{130,1400})(?:[^A-Za-z0-9_\-]|$)",
        1_410,
    ),
    (
        "contentful-token",
        &["cfpat-"],
        r"\b(CFPAT-[A-Za-z0-9_\-]{43})(?:[^A-Za-z0-9_\-]|$)",
        52,
    ),
    (
        "brevo-api-key",
        &["xkeysib-"],
        r"\b(xkeysib-[0-9a-f]{64}-[A-Za-z0-9]{16})\b",
        92,
    ),
    (
        "mapbox-secret-token",
        &["sk.eyj"],
        r"\b(sk\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{20,})",
        300,
    ),
];

/// The token's bytes look random: two of digits, upper and lower case as a bearer token's
/// ([`token_like`]; a hex body has digits and letters), no counting run that documentation uses
/// as a stand-in, and not an identifier made of words (`sb_secret_key_for_testing_only_2024`).
pub(super) fn random_body(c: &Candidate<'_>) -> bool {
    let v = c.value;
    token_like(c) && crate::entropy::shannon(v) >= 3.5 && !counts_up(v) && !made_of_words(v)
}

/// Three or more lower-case words of four letters or more between `_`, `-` and `.`: a name, not
/// a token (a prefix holds at most two, `pscale_oauth_`; a random body almost never one).
fn made_of_words(v: &[u8]) -> bool {
    v.split(|b| matches!(b, b'_' | b'-' | b'.'))
        .filter(|part| part.len() >= 4 && part.iter().all(u8::is_ascii_lowercase))
        .count()
        >= 3
}

/// Whether the token holds a long counting run (`0123456789`, `abcdef`, `1234567890`): the body
/// of a documented placeholder (`sk-1234567890abcdef1234567890abcdef`), never of an issued key.
fn counts_up(v: &[u8]) -> bool {
    let mut run = 1;
    for pair in v.windows(2) {
        let next = pair[1] == pair[0].wrapping_add(1) || (pair[0] == b'9' && pair[1] == b'0');
        run = if next { run + 1 } else { 1 };
        if run >= 6 {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(value: &[u8]) -> Candidate<'_> {
        Candidate {
            value,
            matched: value,
            quoted: false,
            preceding: None,
            following: b"",
        }
    }

    #[test]
    fn random_bodies_pass_and_stand_ins_do_not() {
        for token in [
            "gsk_Zr4mQ8vT1xW9kLpN2bYc7HfJ3sDgA6eRuVwXyZ0aBcDeFgHiJkLmNoPq",
            "dop_v1_7f3c9a1e5b2d8f4a6c0e9b7d3f1a5c8e2b6d4f0a9c7e5b3d1f8a6c4e2b0d9f7a",
            "fw_3kZp9QwLm2XvR8tY1nBc4HsJ",
        ] {
            assert!(random_body(&candidate(token.as_bytes())), "{token}");
        }
        for token in [
            "sk-1234567890abcdef1234567890abcdef",
            "fw_abcdefghijklmnopqrstuvwx",
            "fw_AAAAAAAAAAAAAAAAAAAAAAAA",
            "sb_secret_key_for_testing_only_2024",
            "dckr_pat_your_personal_token_2024x",
            "dop_v1_0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(!random_body(&candidate(token.as_bytes())), "{token}");
        }
    }
}
