//! `/metrics`, `/healthz` and `/readyz` of a running application. Alone in
//! its test binary: the command counters are process-wide.

mod common;

use common::*;
use jetsource::app;
use jetsource::client::SendOptions;
use jetsource::config::Config;
use jetsource::schemas::RejectionCode;

/// The value of the sample `series` (`name` or `name{label="value",…}`),
/// read from the parsed scrape.
fn sample(text: &str, series: &str) -> u64 {
    let (name, labels) = match series.split_once('{') {
        Some((name, rest)) => (name, rest.trim_end_matches('}')),
        None => (series, ""),
    };
    let labels: Vec<(&str, &str)> = labels
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("label=value");
            (k, v.trim_matches('"'))
        })
        .collect();
    let value = common::sample(text, name, &labels);
    assert!(value >= 0.0 && value.fract() == 0.0, "{series} = {value}");
    value as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_commands_and_readyz_reports_readiness() {
    let server = NatsServer::new();
    let url = server.client_url();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut config = Config::default();
    config.observability.metrics_addr = addr.clone();
    let serving = InProcessRun::spawn(reference_app(), config, Some(&url));
    // Ready once the streams exist and the projector caught up.
    let ready = eventually("/readyz answering 200", DEADLINE, || async {
        tokio::net::TcpStream::connect(&addr).await.ok()?;
        let (status, body) = http_get(&addr, "/readyz").await;
        (status == 200).then_some((status, body))
    })
    .await;
    assert_eq!(ready, (200, "ready\n".to_string()));
    assert_eq!(http_get(&addr, "/healthz").await.0, 200);
    assert_eq!(http_get(&addr, "/nothing").await.0, 404);

    let client = commands(&url).await;
    let send = |id: &'static str, command: &'static str, body: &'static str| {
        let client = &client;
        async move { send_with(client, id, command, body, &SendOptions::default()).await }
    };
    let created = send(
        "m1",
        "create",
        r#"{"title":"Hi","body":"x","publish":true}"#,
    )
    .await;
    assert!(created.is_accepted(), "{created:?}");
    assert!(send("m1", "change_title", r#"{"title":"Again"}"#)
        .await
        .is_accepted());
    let rejected = send("m1", "change_title", r#"{"title":"  "}"#).await;
    assert_eq!(rejected.code(), Some(RejectionCode::Validation));
    let missing = send("m2", "publish", "{}").await;
    assert_eq!(missing.code(), Some(RejectionCode::NotFound));

    let (status, text) = http_get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &text,
            r#"jetsource_commands_total{outcome="accepted",code=""}"#
        ),
        2
    );
    assert_eq!(
        sample(
            &text,
            r#"jetsource_commands_total{outcome="rejected",code="validation"}"#
        ),
        1
    );
    assert_eq!(
        sample(
            &text,
            r#"jetsource_commands_total{outcome="rejected",code="not_found"}"#
        ),
        1
    );
    // Two appends: create+publish as one batch of 2, then the new title.
    assert_eq!(sample(&text, "jetsource_append_seconds_count"), 2);
    assert_eq!(
        sample(&text, r#"jetsource_append_events_bucket{le="1"}"#),
        1
    );
    assert_eq!(
        sample(&text, r#"jetsource_append_events_bucket{le="2"}"#),
        2
    );
    assert_eq!(sample(&text, "jetsource_append_conflicts_total"), 0);
    // m1's later commands found its state in memory.
    assert!(sample(&text, r#"jetsource_state_cache_total{result="hit"}"#) >= 2);
    // The rejections reach the error cache through the notices.
    let cached = eventually("the error cache holding both", DEADLINE, || async {
        let (_, text) = http_get(&addr, "/metrics").await;
        (sample(&text, "jetsource_error_cache_entries") == 2).then_some(text)
    })
    .await;
    assert!(sample(&cached, "jetsource_error_cache_bytes") > 0);
    assert_eq!(sample(&text, "jetsource_notices_dropped_total"), 0);
    assert_eq!(sample(&text, "jetsource_nats_connected"), 1);
    sample(
        &text,
        r#"jetsource_projector_lag{projector="blogposts",stream="EVT_BLOGPOST"}"#,
    );

    serving.stop().await.expect("a clean shutdown");
}

#[tokio::test]
async fn a_port_in_use_fails_the_start_naming_the_setting() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = Config::default();
    config.observability.metrics_addr = taken.local_addr().expect("addr").to_string();
    let result = app::run(
        &reference_app(),
        &config,
        Some("nats://127.0.0.1:1"),
        async {},
    )
    .await;
    match result {
        Err(app::RunError::Config(jetsource::config::ConfigError::Invalid { setting, .. })) => {
            assert_eq!(setting, "observability.metrics_addr")
        }
        other => panic!("expected the setting named, got {other:?}"),
    }
}
