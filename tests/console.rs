//! The web console in a real headless Chromium, against `jetsource run`
//! (in this process) and a real nats-server: a command sent through the
//! form built from its JSON Schema, its reply, its events in the live tail
//! and the aggregate's history, the state moved back to an earlier
//! sequence, a rejection in the error cache (listed and live), the
//! projector's lag, a parked event skipped. Each view's screenshot is written to the test's temp
//! folder, and to `docs/console/` with `JETSOURCE_SCREENSHOTS=docs`.

mod common;

use common::*;
use fantoccini::{Client, Locator};
use jetsource::config::Config;

/// The text of `css`, once `done` holds for it.
async fn text_when(client: &Client, css: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    eventually(what, DEADLINE, || async {
        let text = client
            .find(Locator::Css(css))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        done(&text).then_some(text)
    })
    .await
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn fill(client: &Client, css: &str, text: &str) {
    let input = client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
}

async fn choose(client: &Client, css: &str, value: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .select_by_value(value)
        .await
        .unwrap_or_else(|e| panic!("choose {value} in {css}: {e}"));
}

/// Writes the view's screenshot under the test's temp folder, and into
/// `docs/console/` when `JETSOURCE_SCREENSHOTS=docs` (refreshing the
/// docs is a choice, not a side effect of every test run).
async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("a screenshot");
    let mut dirs = vec![format!("{}/console", env!("CARGO_TARGET_TMPDIR"))];
    if std::env::var("JETSOURCE_SCREENSHOTS").as_deref() == Ok("docs") {
        dirs.push(format!("{}/docs/console", env!("CARGO_MANIFEST_DIR")));
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let path = format!("{dir}/{name}.png");
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

/// Sends `command` to blog post `id` through the form and returns the reply shown.
async fn send(client: &Client, id: &str, command: &str, fields: &[(&str, &str)]) -> String {
    click(client, "nav a[data-view=send]").await;
    choose(client, "#send-type", "blogpost").await;
    fill(client, "#send-id", id).await;
    choose(client, "#send-command", command).await;
    for (name, value) in fields {
        fill(client, &format!("#send-fields [name={name}]"), value).await;
    }
    click(client, "#send-submit").await;
    text_when(client, "#send-reply", "a reply", |t| {
        t.starts_with("accepted") || t.starts_with("rejected")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_sends_shows_rewinds_and_reports() {
    let server = NatsServer::new();
    let url = server.client_url();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut config = Config::default();
    config.console.addr = addr.clone();
    let serving = InProcessRun::spawn(reference_app(), config, Some(&url));
    eventually("the console listening", DEADLINE, || async {
        tokio::net::TcpStream::connect(&addr).await.ok()
    })
    .await;
    let browser = browser().await;
    let client = &browser.client;
    client
        .goto(&format!("http://{addr}/#errors"))
        .await
        .expect("open the console");
    // The live views follow from when they are first opened.
    click(client, "nav a[data-view=tail]").await;
    text_when(client, "#tail-status", "the tail following", |t| {
        t.starts_with("following")
    })
    .await;

    let created = send(
        client,
        "b1",
        "create",
        &[("title", "First title"), ("body", "Hello")],
    )
    .await;
    assert!(created.starts_with("accepted"), "{created}");
    assert!(created.contains("BlogPostCreated"), "{created}");
    screenshot(client, "send").await;
    let renamed = send(client, "b1", "change_title", &[("title", "Second title")]).await;
    assert!(renamed.starts_with("accepted"), "{renamed}");
    let refused = send(client, "b1", "change_title", &[("title", "   ")]).await;
    assert!(
        refused.starts_with("rejected") && refused.contains("validation"),
        "{refused}"
    );

    click(client, "nav a[data-view=tail]").await;
    text_when(client, "#tail-table", "both events in the live tail", |t| {
        t.contains("evt.blogpost.b1.BlogPostCreated")
            && t.contains("evt.blogpost.b1.BlogPostTitleChanged")
    })
    .await;
    screenshot(client, "tail").await;

    click(client, "nav a[data-view=aggregate]").await;
    choose(client, "#aggregate-type", "blogpost").await;
    fill(client, "#aggregate-id", "b1").await;
    click(client, "#aggregate-form button").await;
    let history = text_when(client, "#events-table", "the history", |t| {
        t.contains("BlogPostTitleChanged")
    })
    .await;
    assert!(
        history.find("BlogPostCreated") < history.find("BlogPostTitleChanged"),
        "{history}"
    );
    let now = text_when(client, "#rewind-state", "today's state", |t| {
        t.contains("Second title")
    })
    .await;
    assert!(!now.contains("First title"), "{now}");
    fill(client, "#rewind-seq", "1").await;
    click(client, "#rewind-form button").await;
    let then = text_when(client, "#rewind-state", "the state at sequence 1", |t| {
        t.contains("First title")
    })
    .await;
    assert!(!then.contains("Second title"), "{then}");
    text_when(client, "#rewind-note", "the sequence shown", |t| {
        t.contains("after sequence 1")
    })
    .await;
    screenshot(client, "aggregate").await;

    click(client, "nav a[data-view=errors]").await;
    text_when(client, "#live-errors-table", "the rejection, live", |t| {
        t.contains("validation")
    })
    .await;
    choose(client, "#errors-type", "blogpost").await;
    fill(client, "#errors-id", "b1").await;
    click(client, "#errors-form button").await;
    let listed = text_when(
        client,
        "#errors-table",
        "the rejection in the error cache",
        |t| t.contains("validation"),
    )
    .await;
    assert!(listed.contains("the title is empty"), "{listed}");
    // A command id links to its status.
    click(client, "#errors-table a.command-link").await;
    text_when(
        client,
        "#status-answer",
        "the rejected command's status",
        |t| t.contains("\"rejected\""),
    )
    .await;
    screenshot(client, "errors").await;

    click(client, "nav a[data-view=projectors]").await;
    // Caught up with both events: applied 2 of 2, lag 0.
    click(client, "#projectors-refresh").await;
    let row = text_when(
        client,
        "#projectors-table tr[data-projector=blogposts]",
        "the projector's lag",
        |t| t.contains("EVT_BLOGPOST") && t.contains("live"),
    )
    .await;
    let lag = text_when(
        client,
        "#projectors-table tr[data-projector=blogposts] td.lag",
        "a lag",
        |t| t == "0",
    )
    .await;
    assert_eq!(lag, "0", "{row}");
    click(
        client,
        "#projectors-table tr[data-projector=blogposts] button",
    )
    .await;
    text_when(client, "#parked-list", "its parked events", |t| t == "none").await;
    // The process manager beside them, read from JetStream: live, nothing
    // waiting (no post was scheduled), nothing parked.
    let publishing = text_when(
        client,
        "#processes-table tr[data-process-manager=publishing]",
        "the process manager",
        |t| t.contains("live") && t.contains("EVT_BLOGPOST"),
    )
    .await;
    assert!(publishing.contains("0 parked"), "{publishing}");

    // An event no reader decodes, written past the handlers: the
    // projection parks it and halts there; skipped for good from the
    // page (two clicks), it goes on.
    let js = async_nats::jetstream::new(connect(&url).await);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Command-Id", "by-hand");
    let seq = js
        .publish_with_headers(
            "evt.blogpost.broken.BlogPostCreated",
            headers,
            r#"{"not":"a post"}"#.into(),
        )
        .await
        .expect("published")
        .await
        .expect("stored")
        .sequence;
    let halted = "#projectors-table tr[data-projector=blogposts]";
    eventually("the projection halted", DEADLINE, || async {
        click(client, "#projectors-refresh").await;
        let row = client.find(Locator::Css(halted)).await.ok()?;
        row.text().await.ok().filter(|t| t.contains("halted"))
    })
    .await;
    click(client, &format!("{halted} button")).await;
    let skip = format!("#parked-table tr[data-seq=\"{seq}\"] button.skip-parked");
    text_when(client, &skip, "the parked event", |t| t == "Skip").await;
    click(client, &skip).await;
    text_when(client, &skip, "the skip armed", |t| t == "Skip for good?").await;
    screenshot(client, "parked").await;
    click(client, &skip).await;
    text_when(client, "#parked-outcome", "the skip's outcome", |t| {
        t == format!("EVT_BLOGPOST #{seq}: skipped")
    })
    .await;
    text_when(client, "#parked-list", "nothing parked", |t| t == "none").await;
    eventually("the projection live again", DEADLINE, || async {
        click(client, "#projectors-refresh").await;
        let row = client.find(Locator::Css(halted)).await.ok()?;
        row.text().await.ok().filter(|t| t.contains("live"))
    })
    .await;
    // Scheduled publishing parked the same event (it does not decode):
    // given up from the page too.
    // The table is drawn again on every refresh: click once the row says
    // what was parked, again if it was redrawn under the click.
    let publishing = "#processes-table tr[data-process-manager=publishing] button";
    eventually("the parked triggers opened", DEADLINE, || async {
        let button = client.find(Locator::Css(publishing)).await.ok()?;
        if button.text().await.ok()? != "1 parked" {
            click(client, "#projectors-refresh").await;
            return None;
        }
        button.click().await.ok()
    })
    .await;
    let skip_trigger = format!("#process-parked-table tr[data-seq=\"{seq}\"] button.skip-parked");
    text_when(client, &skip_trigger, "the parked trigger", |t| t == "Skip").await;
    click(client, &skip_trigger).await;
    text_when(client, &skip_trigger, "the skip armed", |t| {
        t == "Skip for good?"
    })
    .await;
    click(client, &skip_trigger).await;
    text_when(
        client,
        "#process-parked-outcome",
        "the trigger's skip",
        |t| t == format!("EVT_BLOGPOST #{seq}: skipped"),
    )
    .await;
    text_when(client, "#process-parked", "no trigger parked", |t| {
        t == "publishing: none parked"
    })
    .await;
    screenshot(client, "projectors").await;

    click(client, "nav a[data-view=streams]").await;
    text_when(client, "#streams-table", "the event stream", |t| {
        t.contains("EVT_BLOGPOST")
    })
    .await;
    screenshot(client, "streams").await;

    browser
        .client
        .clone()
        .close()
        .await
        .expect("close the session");
    serving.stop().await.expect("a clean shutdown");
}

#[tokio::test]
async fn a_console_off_loopback_needs_a_token() {
    let mut config = Config::default();
    config.console.addr = "0.0.0.0:9465".into();
    let refused = config.validate().expect_err("no token");
    assert!(matches!(
        refused,
        jetsource::config::ConfigError::Invalid { ref setting, .. } if setting == "console.token"
    ));
    config.console.token = Some(jetsource::auth::Secret::new("t0ken"));
    config.validate().expect("a token given");
}
