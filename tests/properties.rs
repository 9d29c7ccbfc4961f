//! Properties of command body decoding over generated input: decoding never
//! panics on any bytes, and accepts exactly the bodies of the right shape
//! for the reference aggregates, as an independent oracle reads the shape.

use jetsource::handlers::codec::{decode_command, CommandDecodeError};
use jetsource_reference::account::AccountCommand;
use jetsource_reference::blog::BlogPostCommand;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value};

const NAMES: &[&str] = &[
    "open",
    "deposit",
    "withdraw",
    "create",
    "change_title",
    "publish",
    "delete",
    "Open",
    "",
];
const KEYS: &[&str] = &["amount", "owner", "title", "body", "publish", "author", "x"];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(NAMES).prop_map(str::to_string),
        any::<String>()
    ]
}

/// A scalar of every JSON kind, including the edges of `u64`.
fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        (i64::MIN..0).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z ]{0,8}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

/// Mostly objects over the fields the commands know (and one they do not),
/// sometimes another JSON value.
fn body() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => prop::collection::btree_map(prop::sample::select(KEYS), scalar(), 0..4).prop_map(
            |fields| Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())
        ),
        1 => scalar(),
        1 => prop::collection::vec(scalar(), 0..3).prop_map(Value::Array),
    ]
}

/// The object's fields when it has exactly `required` plus some of
/// `optional`, nothing else.
fn fields<'a>(
    body: &'a Value,
    required: &[&str],
    optional: &[&str],
) -> Option<&'a Map<String, Value>> {
    let object = body.as_object()?;
    let only_known = object
        .keys()
        .all(|k| required.contains(&k.as_str()) || optional.contains(&k.as_str()));
    let all_required = required.iter().all(|k| object.contains_key(*k));
    (only_known && all_required).then_some(object)
}

fn expected_account(name: &str, body: &Value) -> Option<AccountCommand> {
    match name {
        "open" => {
            let f = fields(body, &["owner"], &[])?;
            Some(AccountCommand::Open {
                owner: f["owner"].as_str()?.to_string(),
            })
        }
        "deposit" => Some(AccountCommand::Deposit {
            amount: fields(body, &["amount"], &[])?["amount"].as_u64()?,
        }),
        "withdraw" => Some(AccountCommand::Withdraw {
            amount: fields(body, &["amount"], &[])?["amount"].as_u64()?,
        }),
        _ => None,
    }
}

fn expected_blog(name: &str, body: &Value) -> Option<BlogPostCommand> {
    match name {
        "create" => {
            let f = fields(body, &["title", "body"], &["publish", "author"])?;
            let publish = match f.get("publish") {
                None => false,
                Some(p) => p.as_bool()?,
            };
            let author = match f.get("author") {
                None | Some(Value::Null) => None,
                Some(a) => Some(a.as_str()?.to_string()),
            };
            Some(BlogPostCommand::Create {
                title: f["title"].as_str()?.to_string(),
                body: f["body"].as_str()?.to_string(),
                author,
                publish,
            })
        }
        "change_title" => Some(BlogPostCommand::ChangeTitle {
            title: fields(body, &["title"], &[])?["title"]
                .as_str()?
                .to_string(),
        }),
        "publish" => fields(body, &[], &[]).map(|_| BlogPostCommand::Publish {}),
        _ => None,
    }
}

fn known(name: &str, names: &[&str]) -> bool {
    names.contains(&name)
}

proptest! {
    // Failing cases found once are kept beside this file and tried first
    // (the path is relative to the package, where cargo runs tests).
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/properties.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn decoding_never_panics(name in name(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_command::<AccountCommand>(&name, &bytes);
        let _ = decode_command::<BlogPostCommand>(&name, &bytes);
    }

    #[test]
    fn account_commands_decode_exactly_the_valid_shapes(name in name(), body in body()) {
        let bytes = serde_json::to_vec(&body).expect("encodes");
        let decoded = decode_command::<AccountCommand>(&name, &bytes);
        match expected_account(&name, &body) {
            Some(expected) => prop_assert_eq!(decoded.expect("a valid shape decodes"), expected),
            None => {
                let err = decoded.expect_err("an invalid shape is refused");
                let unknown = matches!(err, CommandDecodeError::Unknown { .. });
                prop_assert_eq!(unknown, !known(&name, &["open", "deposit", "withdraw"]));
            }
        }
    }

    #[test]
    fn blog_commands_decode_exactly_the_valid_shapes(name in name(), body in body()) {
        let bytes = serde_json::to_vec(&body).expect("encodes");
        let decoded = decode_command::<BlogPostCommand>(&name, &bytes);
        match expected_blog(&name, &body) {
            Some(expected) => prop_assert_eq!(decoded.expect("a valid shape decodes"), expected),
            None => {
                let err = decoded.expect_err("an invalid shape is refused");
                let unknown = matches!(err, CommandDecodeError::Unknown { .. });
                prop_assert_eq!(unknown, !known(&name, &["create", "change_title", "publish"]));
            }
        }
    }

    /// Whitespace around a valid body changes nothing; anything after it
    /// makes it invalid.
    #[test]
    fn only_whitespace_may_surround_a_body(amount in any::<u64>(), pad in "[ \t\r\n]{0,4}", junk in "[a-z0-9{}]{1,4}") {
        let body = format!(r#"{pad}{{"amount":{amount}}}{pad}"#);
        prop_assert_eq!(
            decode_command::<AccountCommand>("deposit", body.as_bytes()).expect("decodes"),
            AccountCommand::Deposit { amount }
        );
        let body = format!(r#"{{"amount":{amount}}}{pad}{junk}"#);
        prop_assert!(decode_command::<AccountCommand>("deposit", body.as_bytes()).is_err());
    }
}

#[test]
fn an_empty_body_is_an_empty_object() {
    assert_eq!(
        decode_command::<BlogPostCommand>("publish", b"").expect("decodes"),
        BlogPostCommand::Publish {}
    );
    assert!(decode_command::<AccountCommand>("deposit", b"").is_err());
}
