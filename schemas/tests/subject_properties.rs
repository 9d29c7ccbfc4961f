//! Properties of tokens and subjects over generated input: parsing never
//! panics, valid parts round-trip, and a part holding a dot, a wildcard or
//! whitespace is always refused.

use jetsource_schemas::subject::{CommandSubject, EventSubject};
use jetsource_schemas::token::{validate, MAX_TOKEN_LEN};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const TOKEN: &str = "[A-Za-z0-9_-]{1,128}";

/// A valid token with one character NATS gives meaning to (or that ends a
/// protocol line) inserted somewhere.
fn poisoned() -> impl Strategy<Value = String> {
    let bad = prop::sample::select(vec![".", "*", ">", " ", "\t", "\r", "\n", "\u{a0}"]);
    ("[A-Za-z0-9_-]{0,20}", bad, "[A-Za-z0-9_-]{0,20}").prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

/// Strings shaped like subjects, so parsing gets past its first checks.
fn subject_like() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just("cmd".to_string()), "[A-Za-z0-9_ *>.\u{e9}-]{0,8}"],
        0..7,
    )
    .prop_map(|parts| parts.join("."))
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

proptest! {
    // Failing cases found once are kept beside this file and tried first
    // (the path is relative to the package, where cargo runs tests).
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/subject_properties.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn parsing_never_panics(s in any::<String>(), t in subject_like()) {
        let _ = CommandSubject::parse(&s);
        let _ = EventSubject::parse(&s);
        let _ = CommandSubject::parse(&t);
        let _ = EventSubject::parse(&t);
    }

    #[test]
    fn validate_accepts_exactly_the_token_set(
        s in prop_oneof![any::<String>(), "[A-Za-z0-9_.*> \u{e9}-]{0,140}"],
    ) {
        let expected = !s.is_empty() && s.len() <= MAX_TOKEN_LEN && s.chars().all(allowed);
        prop_assert_eq!(validate("token", &s).is_ok(), expected);
    }

    #[test]
    fn valid_tokens_round_trip(a in TOKEN, b in TOKEN, c in TOKEN) {
        let built = CommandSubject::build(&a, &b, &c).expect("valid tokens build");
        let parsed = CommandSubject::parse(&built).expect("a built subject parses");
        prop_assert_eq!(
            (parsed.aggregate_type, parsed.aggregate_id, parsed.command),
            (a.as_str(), b.as_str(), c.as_str())
        );
        let built = EventSubject::build(&a, &b, &c).expect("valid tokens build");
        let parsed = EventSubject::parse(&built).expect("a built subject parses");
        prop_assert_eq!(
            (parsed.aggregate_type, parsed.aggregate_id, parsed.event_type),
            (a.as_str(), b.as_str(), c.as_str())
        );
    }

    #[test]
    fn a_poisoned_token_is_refused_anywhere(
        bad in poisoned(),
        good in TOKEN,
        position in 0usize..3,
    ) {
        prop_assert!(validate("token", &bad).is_err());
        let mut parts = [good.as_str(); 3];
        parts[position] = &bad;
        prop_assert!(CommandSubject::build(parts[0], parts[1], parts[2]).is_err());
        prop_assert!(EventSubject::build(parts[0], parts[1], parts[2]).is_err());
        let subject = format!("cmd.{}.{}.{}", parts[0], parts[1], parts[2]);
        prop_assert!(CommandSubject::parse(&subject).is_err(), "{subject:?}");
    }

    #[test]
    fn an_over_long_or_empty_token_is_refused(good in TOKEN, extra in 1usize..64, position in 0usize..3) {
        let long = "x".repeat(MAX_TOKEN_LEN + extra);
        for bad in [long.as_str(), ""] {
            let mut parts = [good.as_str(); 3];
            parts[position] = bad;
            let subject = format!("cmd.{}.{}.{}", parts[0], parts[1], parts[2]);
            prop_assert!(CommandSubject::parse(&subject).is_err(), "{subject:?}");
            prop_assert!(CommandSubject::build(parts[0], parts[1], parts[2]).is_err());
        }
    }
}
