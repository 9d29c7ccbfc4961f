//! What the process managers rely on of JetStream message schedules
//! (ADR-51), checked against the pinned nats-server: a message held on a
//! schedule subject with `Nats-Schedule: @at <RFC 3339>` and
//! `Nats-Schedule-Target` is published to the target, a subject of the same
//! stream, once its time has come, and the schedule message is removed; a
//! schedule purged before its time never fires; a second message on a
//! held subject replaces its schedule; one whose time passed while the
//! server was down fires once after the restart.

mod common;

use async_nats::jetstream::{self, stream};
use common::*;
use futures::StreamExt;
use std::time::Duration;

/// A stream holding schedules on `sched.>` and their targets on `fired.>`.
async fn schedules_stream(js: &jetstream::Context) -> stream::Stream {
    js.create_stream(stream::Config {
        name: "SCHED_PROBE".into(),
        subjects: vec!["sched.>".into(), "fired.>".into()],
        allow_message_schedules: true,
        ..Default::default()
    })
    .await
    .expect("a stream allowing message schedules")
}

/// RFC 3339 for `from_now` from now.
fn at(from_now: Duration) -> String {
    (time::OffsetDateTime::now_utc() + from_now)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

async fn schedule(js: &jetstream::Context, name: &str, when: &str) {
    schedule_body(js, name, when, name).await
}

async fn schedule_body(js: &jetstream::Context, name: &str, when: &str, body: &str) {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Schedule", format!("@at {when}").as_str());
    h.insert("Nats-Schedule-Target", format!("fired.{name}").as_str());
    js.publish_with_headers(format!("sched.{name}"), h, body.to_string().into())
        .await
        .expect("publish")
        .await
        .expect("the schedule is stored");
}

/// How many messages the stream holds on `subject`.
async fn count(stream: &mut stream::Stream, subject: &str) -> u64 {
    let info = stream
        .info_with_subjects(subject)
        .await
        .expect("info")
        .next()
        .await;
    match info {
        Some(Ok((_, n))) => n as u64,
        _ => 0,
    }
}

#[tokio::test]
async fn a_schedule_fires_once_at_its_time_and_a_purged_one_never() {
    let mut server = NatsServer::new();
    let client = connect(&server.client_url()).await;
    let js = jetstream::new(client.clone());
    let mut stream = schedules_stream(&js).await;

    // Far enough ahead that it is surely stored before its time.
    let soon = at(Duration::from_secs(2));
    schedule(&js, "kept", &soon).await;
    schedule(&js, "cancelled", &soon).await;
    schedule(&js, "late", &at(Duration::from_secs(3))).await;
    // Moved: a second message on the held subject replaces the first.
    schedule_body(&js, "moved", &soon, "first").await;
    schedule_body(&js, "moved", &at(Duration::from_secs(3)), "second").await;
    assert_eq!(count(&mut stream, "sched.kept").await, 1, "held, not fired");
    assert_eq!(
        count(&mut stream, "fired.kept").await,
        0,
        "not before its time"
    );

    // Cancelling is purging the schedule's subject.
    stream
        .purge()
        .filter("sched.cancelled")
        .await
        .expect("purge the schedule");

    eventually("the kept schedule fires", DEADLINE, || {
        let mut stream = stream.clone();
        async move { (count(&mut stream, "fired.kept").await == 1).then_some(()) }
    })
    .await;
    let fired = stream
        .get_last_raw_message_by_subject("fired.kept")
        .await
        .expect("the fired message");
    assert_eq!(&fired.payload[..], b"kept", "the body is the schedule's");
    assert_eq!(
        fired.headers.get("Nats-Scheduler").map(|v| v.as_str()),
        Some("sched.kept"),
        "a fired message names its schedule"
    );
    eventually("the held schedule is removed once fired", DEADLINE, || {
        let mut stream = stream.clone();
        async move { (count(&mut stream, "sched.kept").await == 0).then_some(()) }
    })
    .await;

    // The server is down when "late" is due, and starts after: it fires
    // once, late.
    server.kill();
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.restart();
    let client = connect(&server.client_url()).await;
    let js = jetstream::new(client);
    let mut stream = js.get_stream("SCHED_PROBE").await.expect("kept its store");
    eventually(
        "the late schedule fires after the restart",
        DEADLINE,
        || {
            let mut stream = stream.clone();
            async move { (count(&mut stream, "fired.late").await == 1).then_some(()) }
        },
    )
    .await;

    eventually(
        "the moved schedule fires after the restart",
        DEADLINE,
        || {
            let mut stream = stream.clone();
            async move { (count(&mut stream, "fired.moved").await == 1).then_some(()) }
        },
    )
    .await;

    // Whatever fires fires by now: a second later, nothing fired twice and
    // the purged schedule never did.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(count(&mut stream, "fired.kept").await, 1, "fired once");
    assert_eq!(
        count(&mut stream, "fired.late").await,
        1,
        "fired once, late"
    );
    assert_eq!(
        count(&mut stream, "fired.cancelled").await,
        0,
        "never fired"
    );
    assert_eq!(
        count(&mut stream, "fired.moved").await,
        1,
        "fired once, as moved"
    );
    let moved = stream
        .get_last_raw_message_by_subject("fired.moved")
        .await
        .expect("the moved one");
    assert_eq!(
        &moved.payload[..],
        b"second",
        "the second message's schedule"
    );
}
