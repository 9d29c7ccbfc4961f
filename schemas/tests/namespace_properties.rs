//! Properties of subject prefixes over generated input: stream and bucket
//! names decode back to their prefix and name (so the mapping is
//! one-to-one), and no namespace's subscriptions match another's subjects.

use jetsource_schemas::namespace::{Namespace, RESERVED_TOKENS};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

/// Prefix tokens, drawn mostly from a small set so that near-collisions
/// (`a.b` against `a-b`, `a` against `a.b`) come up often.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["a", "b", "a-b", "ab", "evt-x", "1", "-", "cmdx"])
            .prop_map(str::to_string),
        "[a-z0-9-]{1,6}".prop_filter("not reserved", |t| !RESERVED_TOKENS.contains(&t.as_str())),
    ]
}

/// A valid prefix, or none.
fn prefix() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..4).prop_map(|tokens| tokens.join("."))
}

/// Aggregate types: lower case, `_` and `-` allowed.
fn aggregate_type() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["a", "b", "b_c", "evt_b", "a_evt_b", "x-y"])
            .prop_map(str::to_string),
        "[a-z0-9_-]{1,12}",
    ]
}

/// Bucket names as jetsource makes them: a lower-case letter first.
fn bucket_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("jetsource_command_index".to_string()),
        Just("jetsource_projectors".to_string()),
        "[A-Za-z0-9_-]{1,12}".prop_map(|n| format!("projection_{n}")),
    ]
}

/// Inverts `Namespace::stream_name`: the first upper-case letter starts `EVT_`.
fn decode_stream(name: &str) -> Option<(String, String)> {
    let k = name.find(|c: char| c.is_ascii_uppercase())?;
    let prefix = match k {
        0 => String::new(),
        k => name[..k].strip_suffix('_')?.replace('_', "."),
    };
    let aggregate_type = name[k..].strip_prefix("EVT_")?.to_ascii_lowercase();
    Some((prefix, aggregate_type))
}

/// Inverts `Namespace::bucket`: the first lower-case letter starts the name.
fn decode_bucket(bucket: &str) -> Option<(String, String)> {
    let k = bucket.find(|c: char| c.is_ascii_lowercase())?;
    let prefix = match k {
        0 => String::new(),
        k => bucket[..k]
            .strip_suffix('_')?
            .to_ascii_lowercase()
            .replace('_', "."),
    };
    Some((prefix, bucket[k..].to_string()))
}

/// NATS matching: `*` one token, `>` one or more trailing tokens.
fn matches(filter: &str, subject: &str) -> bool {
    let f: Vec<&str> = filter.split('.').collect();
    let s: Vec<&str> = subject.split('.').collect();
    for (i, t) in f.iter().enumerate() {
        match (*t, s.get(i)) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (t, Some(u)) if t == *u => {}
            _ => return false,
        }
    }
    f.len() == s.len()
}

/// True when some subject matches both filters.
fn overlap(a: &str, b: &str) -> bool {
    let a: Vec<&str> = a.split('.').collect();
    let b: Vec<&str> = b.split('.').collect();
    for i in 0..a.len().min(b.len()) {
        match (a[i], b[i]) {
            (">", _) | (_, ">") => return true,
            ("*", _) | (_, "*") => {}
            (x, y) if x == y => {}
            _ => return false,
        }
    }
    a.len() == b.len()
}

/// What a namespace's processes subscribe to (or capture in streams).
fn filters(ns: &Namespace, aggregate_type: &str) -> Vec<String> {
    let mut all = vec![
        ns.commands_filter(),
        ns.events_filter(),
        ns.type_filter(aggregate_type).expect("valid type"),
        ns.subject("notice.rejected.*.*"),
        ns.subject("errors.get.*"),
        ns.subject("errors.list.*.*"),
        ns.subject("status.*"),
        ns.subject("feedback.peer.get.*"),
        ns.subject("feedback.peer.list.*.*"),
        ns.subject("query.projectors.status"),
        ns.subject("query.posts.>"),
        ns.subject("projector.posts.*"),
    ];
    all.sort();
    all
}

/// What a namespace's processes and clients publish.
fn subjects(ns: &Namespace, aggregate_type: &str) -> Vec<String> {
    vec![
        ns.command_subject(aggregate_type, "p1", "create")
            .expect("valid"),
        ns.event_subject(aggregate_type, "p1", "Created")
            .expect("valid"),
        ns.notice_subject(aggregate_type, "p1").expect("valid"),
        ns.errors_get_subject("c1").expect("valid"),
        ns.errors_list_subject(aggregate_type, "p1").expect("valid"),
        ns.status_subject("c1").expect("valid"),
        ns.peer_get_subject("c1").expect("valid"),
        ns.peer_list_subject(aggregate_type, "p1").expect("valid"),
        ns.subject("query.projectors.status"),
        ns.subject("query.posts.all"),
        ns.subject("projector.posts.rebuild"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("tests/namespace_properties.proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn generated_prefixes_are_valid(p in prefix()) {
        prop_assume!(p.len() <= 64);
        let ns = Namespace::new(&p).expect("valid");
        prop_assert_eq!(ns.prefix(), p.as_str());
    }

    #[test]
    fn stream_names_decode_to_prefix_and_type(p in prefix(), t in aggregate_type()) {
        prop_assume!(p.len() <= 64);
        let ns = Namespace::new(&p).expect("valid");
        let name = ns.stream_name(&t);
        prop_assert!(name.starts_with(ns.stream_prefix()));
        prop_assert_eq!(decode_stream(&name), Some((p, t)));
    }

    #[test]
    fn bucket_names_decode_to_prefix_and_name(p in prefix(), b in bucket_name()) {
        prop_assume!(p.len() <= 64);
        let bucket = Namespace::new(&p).expect("valid").bucket(&b);
        prop_assert_eq!(decode_bucket(&bucket), Some((p, b)));
    }

    #[test]
    fn namespaces_never_hear_each_other(
        p in prefix(),
        q in prefix(),
        s in aggregate_type(),
        t in aggregate_type(),
    ) {
        prop_assume!(p != q && p.len() <= 64 && q.len() <= 64);
        let (np, nq) = (Namespace::new(&p).expect("valid"), Namespace::new(&q).expect("valid"));
        for filter in filters(&nq, &t) {
            for subject in subjects(&np, &s) {
                prop_assert!(!matches(&filter, &subject), "{q:?} hears {subject:?} of {p:?} on {filter:?}");
            }
        }
        // Nor do any two filters (streams' subjects included: JetStream
        // refuses overlapping streams).
        for a in filters(&np, &s) {
            for b in filters(&nq, &t) {
                prop_assert!(!overlap(&a, &b), "{a:?} overlaps {b:?}");
            }
        }
        prop_assert!(!np.stream_name(&s).starts_with(nq.stream_prefix()));
    }

    #[test]
    fn a_namespace_hears_itself(p in prefix(), t in aggregate_type()) {
        prop_assume!(p.len() <= 64);
        let ns = Namespace::new(&p).expect("valid");
        let command = ns.command_subject(&t, "p1", "create").expect("valid");
        prop_assert!(matches(&ns.commands_filter(), &command));
        let parsed = ns.parse_command(&command).expect("parses");
        prop_assert_eq!(parsed.aggregate_type, t.as_str());
        let event = ns.event_subject(&t, "p1", "Created").expect("valid");
        prop_assert!(matches(&ns.type_filter(&t).expect("valid"), &event));
        prop_assert_eq!(ns.parse_event(&event).map(|e| e.aggregate_type), Some(t.as_str()));
    }
}
