//! `/metrics` keeps the series dashboards read: each role's scrape, parsed
//! by a Prometheus text parser, holds the same series (names and label
//! sets) and help texts as the scrapes recorded in `tests/fixtures/metrics/`
//! from `jetsource run` before the metrics moved to `prometheus-client`.
//! Alone in its test binary: the command counters are process-wide.

mod common;

use common::*;
use jetsource::config::Config;

/// Runs the reference application with `roles`, sends the commands the
/// recording was made after, and returns one scrape.
async fn scrape(server: &NatsServer, roles: &[&str]) -> String {
    let url = server.client_url();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut config = Config::default();
    config.observability.metrics_addr = addr.clone();
    config.run.roles = roles.iter().map(|r| r.to_string()).collect();
    let serving = InProcessRun::spawn(reference_app(), config, Some(&url));
    eventually("/healthz answering", DEADLINE, || async {
        tokio::net::TcpStream::connect(&addr).await.ok()?;
        (http_get(&addr, "/healthz").await.0 == 200).then_some(())
    })
    .await;
    if roles.contains(&"handlers") {
        let client = commands(&url).await;
        for (id, command, body) in [
            (
                "p1",
                "create",
                r#"{"title":"Hi","body":"x","publish":true}"#,
            ),
            ("p1", "change_title", r#"{"title":"  "}"#),
            ("p9", "publish", "{}"),
            ("p1", "change_title", r#"{"title":"Again"}"#),
        ] {
            send_with(&client, id, command, body, &Default::default()).await;
        }
    }
    let (status, text) = http_get(&addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    serving.stop().await.expect("a clean shutdown");
    text
}

fn recorded(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/metrics/{name}.txt",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_serves_the_series_and_help_texts_it_served_before() {
    let server = NatsServer::new();
    for (fixture, roles) in [
        ("all", &["handlers", "feedback", "projectors"][..]),
        ("handlers", &["handlers"][..]),
        ("feedback", &["feedback"][..]),
        ("projectors", &["projectors"][..]),
    ] {
        let before = recorded(fixture);
        let now = scrape(&server, roles).await;
        let (was, is) = (series_set(&before), series_set(&now));
        assert!(!was.is_empty(), "{fixture}: the recording parses to series");
        let lost: Vec<_> = was.difference(&is).collect();
        let new: Vec<_> = is.difference(&was).collect();
        assert!(
            lost.is_empty() && new.is_empty(),
            "{fixture}: series lost {lost:?}, series new {new:?}"
        );
        assert_eq!(helps(&before), helps(&now), "{fixture}: help texts");
        if fixture == "all" {
            counts_what_happened(&now);
        }
    }
}

/// The first scrape of the process, after the four commands: the values
/// are right too, and the text is OpenMetrics.
fn counts_what_happened(text: &str) {
    // OpenMetrics closes a scrape with `# EOF`; a counter's family is named
    // without `_total`, its sample with it.
    assert_eq!(text.lines().last(), Some("# EOF"), "{text}");
    assert!(
        text.contains("# TYPE jetsource_commands counter\n"),
        "{text}"
    );
    let outcome = |outcome, code| {
        sample(
            text,
            "jetsource_commands_total",
            &[("outcome", outcome), ("code", code)],
        )
    };
    assert_eq!(outcome("accepted", ""), 2.0);
    assert_eq!(outcome("rejected", "validation"), 1.0);
    assert_eq!(outcome("rejected", "not_found"), 1.0);
    assert_eq!(
        sample(text, "jetsource_append_events_bucket", &[("le", "1")]),
        1.0
    );
    assert_eq!(
        sample(text, "jetsource_append_events_bucket", &[("le", "2")]),
        2.0
    );
    assert_eq!(sample(text, "jetsource_append_events_sum", &[]), 3.0);
    assert_eq!(sample(text, "jetsource_nats_connected", &[]), 1.0);
}
