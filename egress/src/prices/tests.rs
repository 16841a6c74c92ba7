use super::*;

fn builtin() -> Prices {
    Prices::builtin().unwrap()
}

fn usage(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
    Usage {
        input,
        output,
        cache_read,
        cache_write,
        cache_write_1h: 0,
    }
}

#[test]
fn the_builtin_table_parses_and_prices_the_families_the_product_meets() {
    let p = builtin();
    assert!(p.len() >= 40, "{}", p.len());
    let sonnet = p.lookup(Provider::Anthropic, "claude-sonnet-4-5").unwrap();
    assert_eq!(
        sonnet,
        Price {
            input: 3_000_000,
            output: 15_000_000,
            cache_read: 300_000,
            cache_write: 3_750_000,
            cache_write_1h: 6_000_000,
        }
    );
    // Every written price is a whole number of micro-dollars per million tokens.
    let mini = p.lookup(Provider::OpenAi, "gpt-5-nano").unwrap();
    assert_eq!((mini.input, mini.cache_read), (50_000, 5_000));
    // Anthropic cache writes cost more than input, reads less; OpenAI reads are discounted.
    assert!(sonnet.cache_write > sonnet.input && sonnet.cache_read < sonnet.input);
    let g = p.lookup(Provider::OpenAi, "gpt-4o").unwrap();
    assert!(g.cache_read < g.input);
}

/// (provider, model as the request or response names it, the table entry it must get, or None).
#[test]
fn model_matching_table() {
    use Provider::*;
    let p = builtin();
    type Case<'a> = (Provider, &'a str, Option<(Provider, &'a str)>);
    let cases: &[Case<'_>] = &[
        (
            Anthropic,
            "claude-sonnet-4-5",
            Some((Anthropic, "claude-sonnet-4-5")),
        ),
        (
            Anthropic,
            "claude-sonnet-4-5-20250929",
            Some((Anthropic, "claude-sonnet-4-5")),
        ),
        (
            Anthropic,
            "Claude-Opus-4-1-20250805",
            Some((Anthropic, "claude-opus-4-1")),
        ),
        (
            Anthropic,
            "claude-opus-4-20250514",
            Some((Anthropic, "claude-opus-4")),
        ),
        (
            Anthropic,
            "claude-haiku-4-5",
            Some((Anthropic, "claude-haiku-4-5")),
        ),
        (
            Anthropic,
            "claude-3-5-haiku-20241022",
            Some((Anthropic, "claude-3-5-haiku")),
        ),
        (Anthropic, "claude-sonnet-4-5-latest", None),
        (Anthropic, "claude-sonnet", None),
        (Anthropic, "gpt-4o", None), // another provider's model
        (OpenAi, "gpt-4o", Some((OpenAi, "gpt-4o"))),
        (OpenAi, "gpt-4o-2024-08-06", Some((OpenAi, "gpt-4o"))),
        (
            OpenAi,
            "gpt-4o-mini-2024-07-18",
            Some((OpenAi, "gpt-4o-mini")),
        ),
        (OpenAi, "gpt-4.1-mini", Some((OpenAi, "gpt-4.1-mini"))),
        (OpenAi, "gpt-5-2025-08-07", Some((OpenAi, "gpt-5"))),
        (OpenAi, "gpt-5-pro", Some((OpenAi, "gpt-5-pro"))),
        (OpenAi, "gpt-5-pro-2025-10-06", Some((OpenAi, "gpt-5-pro"))),
        (OpenAi, "o3-mini-2025-01-31", Some((OpenAi, "o3-mini"))),
        (OpenAi, "o4-mini", Some((OpenAi, "o4-mini"))),
        (OpenAi, "gpt-5-turbo", None), // never a prefix match
        (OpenAi, "gpt-4o-audio-preview", None),
        (OpenAi, "", None),
        (
            Gemini,
            "gemini-2.5-flash",
            Some((Gemini, "gemini-2.5-flash")),
        ),
        (
            Gemini,
            "models/gemini-2.5-pro",
            Some((Gemini, "gemini-2.5-pro")),
        ),
        (
            Gemini,
            "gemini-2.0-flash-001",
            Some((Gemini, "gemini-2.0-flash")),
        ),
        (
            Gemini,
            "gemini-2.5-flash-lite",
            Some((Gemini, "gemini-2.5-flash-lite")),
        ),
        (Gemini, "gemini-2.5-flash-preview-09-2025", None),
        (
            OpenRouter,
            "anthropic/claude-sonnet-4.5",
            Some((Anthropic, "claude-sonnet-4-5")),
        ),
        (
            OpenRouter,
            "anthropic/claude-3.7-sonnet",
            Some((Anthropic, "claude-3-7-sonnet")),
        ),
        (OpenRouter, "openai/gpt-4.1", Some((OpenAi, "gpt-4.1"))),
        (
            OpenRouter,
            "openai/gpt-4o-2024-08-06",
            Some((OpenAi, "gpt-4o")),
        ),
        (
            OpenRouter,
            "google/gemini-2.5-flash",
            Some((Gemini, "gemini-2.5-flash")),
        ),
        (OpenRouter, "gpt-4o", None), // OpenRouter ids carry their vendor
        (OpenRouter, "meta-llama/llama-3.3-70b-instruct", None),
        (OpenRouter, "openrouter/auto", None),
    ];
    for (provider, model, want) in cases {
        let got = p.lookup(*provider, model);
        let want = want.map(|(wp, wm)| p.table[&(wp, wm.to_owned())]);
        assert_eq!(got, want, "{provider}/{model}");
    }
}

#[test]
fn version_suffixes() {
    for (model, want) in [
        ("claude-sonnet-4-5-20250929", Some("claude-sonnet-4-5")),
        ("gpt-4o-2024-08-06", Some("gpt-4o")),
        ("gpt-3.5-turbo-0125", Some("gpt-3.5-turbo")),
        ("gemini-2.0-flash-001", Some("gemini-2.0-flash")),
        ("-2024-08-06", None),
        ("-20250929", None),
        ("claude-sonnet-4-5", None),
        ("gpt-4o", None),
        ("o1", None),
        ("é-2024-08-0é", None),
        ("modèle-2024-08-06", Some("modèle")),
    ] {
        assert_eq!(strip_version_suffix(model), want, "{model}");
    }
}

#[test]
fn an_openrouter_entry_wins_over_the_vendor() {
    let mut o = BTreeMap::new();
    o.insert(
        "openrouter/anthropic/claude-sonnet-4.5".to_owned(),
        PriceUsd {
            input: 4.0,
            output: 16.0,
            cache_read: 0.4,
            cache_write: 5.0,
            cache_write_1h: None,
        },
    );
    let p = builtin().with_overrides(&o).unwrap();
    let got = p
        .lookup(Provider::OpenRouter, "anthropic/claude-sonnet-4.5")
        .unwrap();
    assert_eq!(got.input, 4_000_000);
    // The vendor's own route is untouched.
    let own = p.lookup(Provider::Anthropic, "claude-sonnet-4-5").unwrap();
    assert_eq!(own.input, 3_000_000);
}

#[test]
fn operator_overrides_replace_and_add() {
    let text = r#"
        "anthropic/claude-sonnet-4-5" = { input = 2.5, output = 12, cache_read = 0.25, cache_write = 3 }
        ["openai/my-finetune"]
        input = 0.0
        output = 1.0
        cache_read = 0.0
        cache_write = 0.0
    "#;
    let raw: BTreeMap<String, PriceUsd> = toml::from_str(text).unwrap();
    let p = builtin().with_overrides(&raw).unwrap();
    assert_eq!(
        p.lookup(Provider::Anthropic, "claude-sonnet-4-5-20250929"),
        Some(Price {
            input: 2_500_000,
            output: 12_000_000,
            cache_read: 250_000,
            cache_write: 3_000_000,
            cache_write_1h: 5_000_000,
        })
    );
    assert_eq!(
        p.lookup(Provider::OpenAi, "My-Finetune").map(|x| x.output),
        Some(1_000_000)
    );
    assert_eq!(p.len(), builtin().len() + 1);
}

/// (price table text, a piece of the error).
#[test]
fn bad_price_tables_are_refused_with_a_reason() {
    let cases = [
        (
            r#""openai/x" = { input = -1.0, output = 1, cache_read = 1, cache_write = 1 }"#,
            "\"openai/x\": input must be a non-negative",
        ),
        (
            r#""openai/x" = { input = 1, output = 1, cache_read = 1 }"#,
            "missing field `cache_write`",
        ),
        (
            r#""openai/x" = { input = 1, output = 1, cache_read = 1, cache_write = 1, cache = 2 }"#,
            "unknown field `cache`",
        ),
        (
            r#""openai/x" = { input = 1, output = 1, cache_read = 1, cache_write = nan }"#,
            "cache_write must be a non-negative",
        ),
        (
            r#""openai/x" = { input = 1, output = 1e6, cache_read = 1, cache_write = 1 }"#,
            "output = 1000000 USD per million tokens is more than",
        ),
        (
            r#""openai/x" = { input = "3", output = 1, cache_read = 1, cache_write = 1 }"#,
            "invalid type",
        ),
        (
            r#""mistral/x" = { input = 1, output = 1, cache_read = 1, cache_write = 1 }"#,
            "unknown provider",
        ),
        (
            r#""gpt-4o" = { input = 1, output = 1, cache_read = 1, cache_write = 1 }"#,
            "no provider",
        ),
        (
            r#""openai/" = { input = 1, output = 1, cache_read = 1, cache_write = 1 }"#,
            "model id is empty",
        ),
        (
            r#""openai/a b" = { input = 1, output = 1, cache_read = 1, cache_write = 1 }"#,
            "model id is empty or has spaces",
        ),
        ("\"openai/x\" = 3", "invalid type"),
    ];
    for (text, want) in cases {
        let err = Prices::parse_toml(text, "test").unwrap_err().to_string();
        assert!(err.contains(want), "{text}\n→ {err}");
    }
}

/// One-hour cache writes are priced at their own rate (twice input unless written), and never
/// counted twice.
#[test]
fn one_hour_cache_writes_cost_more() {
    let sonnet = builtin()
        .lookup(Provider::Anthropic, "claude-sonnet-4-5")
        .unwrap();
    let with_1h = |written: u64, of_which_1h: u64| Usage {
        cache_write: written,
        cache_write_1h: of_which_1h,
        ..Usage::default()
    };
    // 1 M tokens written: 5-minute 3.75 $, one-hour 6 $ (2 × 3 $ input).
    assert_eq!(sonnet.cost_micros(&with_1h(1_000_000, 0)), 3_750_000);
    assert_eq!(
        sonnet.cost_micros(&with_1h(1_000_000, 1_000_000)),
        6_000_000
    );
    assert_eq!(
        sonnet.cost_micros(&with_1h(1_000_000, 400_000)),
        3_750_000 * 6 / 10 + 6_000_000 * 4 / 10
    );
    // A report claiming more one-hour writes than writes is priced as all one-hour.
    assert_eq!(sonnet.cost_micros(&with_1h(10, 99)), 60);
    assert_eq!(with_1h(10, 4).total(), 10);
    // An operator's own one-hour price wins over the default.
    let raw: BTreeMap<String, PriceUsd> = toml::from_str(
        r#""anthropic/my-model" = { input = 1, output = 1, cache_read = 0.1, cache_write = 1.25, cache_write_1h = 5 }"#,
    )
    .unwrap();
    let p = builtin().with_overrides(&raw).unwrap();
    let mine = p.lookup(Provider::Anthropic, "my-model").unwrap();
    assert_eq!(mine.cache_write_1h, 5_000_000);
    assert!(
        Prices::parse_toml(
            r#""anthropic/m" = { input = 1, output = 1, cache_read = 0.1, cache_write = 1.25, cache_write_1h = -1 }"#,
            "test"
        )
        .is_err()
    );
}

#[test]
fn cost_arithmetic_in_micro_dollars() {
    let sonnet = builtin()
        .lookup(Provider::Anthropic, "claude-sonnet-4-5")
        .unwrap();
    // (usage, micro-dollars): each kind at its own rate, summed, rounded up once.
    let cases = [
        (usage(0, 0, 0, 0), 0),
        (usage(1_000_000, 0, 0, 0), 3_000_000),
        (usage(0, 1_000_000, 0, 0), 15_000_000),
        (usage(0, 0, 1_000_000, 0), 300_000),
        (usage(0, 0, 0, 1_000_000), 3_750_000),
        // The fake upstream's Anthropic response: 25 in, 1000 written, 3000 read, 42 out.
        (usage(25, 42, 3000, 1000), 75 + 630 + 900 + 3750),
        (usage(1, 0, 0, 0), 3),
        (usage(0, 0, 1, 0), 1),  // 0.3 µ$ rounds up
        (usage(0, 0, 3, 0), 1),  // 0.9 µ$
        (usage(0, 0, 4, 0), 2),  // 1.2 µ$
        (usage(0, 0, 10, 0), 3), // exactly 3 µ$
    ];
    for (u, want) in cases {
        assert_eq!(sonnet.cost_micros(&u), want, "{u:?}");
    }
    // OpenAI chat as the fake reports it: 2000 prompt of which 1536 cached, 77 out.
    let gpt4o = builtin().lookup(Provider::OpenAi, "gpt-4o").unwrap();
    assert_eq!(
        gpt4o.cost_micros(&usage(464, 77, 1536, 0)),
        1160 + 770 + 1920
    );
    // No overflow: saturates.
    let huge = Price {
        input: u64::MAX,
        output: u64::MAX,
        cache_read: u64::MAX,
        cache_write: u64::MAX,
        cache_write_1h: u64::MAX,
    };
    assert_eq!(
        huge.cost_micros(&usage(u64::MAX, u64::MAX, u64::MAX, u64::MAX)),
        u64::MAX
    );
}

#[test]
fn unpriced_models_cost_nothing_only_when_nothing_was_used() {
    let p = builtin();
    assert_eq!(
        p.cost_micros(Provider::OpenAi, "unknown", &Usage::default()),
        Some(0)
    );
    assert_eq!(
        p.cost_micros(Provider::OpenAi, "unknown", &usage(1, 0, 0, 0)),
        None
    );
    assert_eq!(
        p.cost_micros(Provider::OpenAi, "gpt-4o", &usage(1, 0, 0, 0)),
        Some(3)
    );
}

#[test]
fn dollars_for_people_and_budgets_from_config() {
    for (micros, text) in [
        (0, "0.00"),
        (1, "0.000001"),
        (4_200, "0.0042"),
        (12_500_000, "12.50"),
        (10_000_000, "10.00"),
        (5_355, "0.005355"),
        (1_234_567_891, "1234.567891"),
    ] {
        assert_eq!(format_usd(micros), text);
    }
    assert_eq!(usd_to_micros(2.5, "b").unwrap(), 2_500_000);
    assert_eq!(usd_to_micros(0.0, "b").unwrap(), 0);
    assert_eq!(usd_to_micros(0.1, "b").unwrap(), 100_000);
    for bad in [-0.01, f64::NAN, f64::INFINITY, 2e6] {
        let e = usd_to_micros(bad, "egress.daily_usd").unwrap_err();
        assert!(e.to_string().contains("egress.daily_usd"), "{e}");
    }
}
