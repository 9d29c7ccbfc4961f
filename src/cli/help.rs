//! The examples under `--help`, in the application's own terms: its binary
//! name, its first aggregate type and command, and its own subcommands
//! (`demo`, `bench`) only when it has them.

use crate::app::App;

/// The `--help` text after the options, for `app` run as `program`, with
/// the application's own subcommands `own`.
pub(crate) fn after_help(app: &App, program: &str, own: &[String]) -> String {
    let (ty, command, body) = first_command(app);
    let has = |name: &str| own.iter().any(|o| o == name);
    let line = |example: String, what: &str| {
        if what.is_empty() {
            format!("  {example}\n")
        } else {
            format!("  {example:<46}  {what}\n")
        }
    };
    let p = program;
    let mut text = String::from("Examples:\n");
    if has("demo") {
        text += &line(
            format!("{p} demo"),
            "the guided tour, on an embedded nats-server",
        );
    }
    text += &line(
        format!("{p} run"),
        "serve commands (embedded nats-server unless a URL is set)",
    );
    if has("bench") {
        text += &line(
            format!("{p} bench --quick"),
            "jetsource against the bare JetStream path",
        );
    }
    text += &line(format!("{p} send {ty} id-1 {command} '{body}'"), "");
    text += &line(
        format!("{p} send {ty} id-1 {command} '{body}' --no-wait"),
        "fire-and-forget; prints the command id",
    );
    text += &line(
        format!("{p} status <command-id>"),
        "accepted (with events), rejected, or unknown",
    );
    text += &line(
        format!("{p} errors get <command-id>"),
        "a rejection from the error cache",
    );
    text += &line(
        format!("{p} errors list {ty} id-1"),
        "an aggregate's recent rejections",
    );
    text += &line(format!("{p} tail evt.{ty}.>"), "events as they are stored");
    text += &line(
        format!("{p} rewind {ty} id-1 --to-seq 12"),
        "its state as of stream sequence 12 (whole commands)",
    );
    text += &line(
        format!("{p} forget {ty} id-1"),
        "destroy its personal data's key: it reads as forgotten",
    );
    text += &line(
        format!("{p} streams"),
        "this application's streams, sizes, contract versions",
    );
    text += &line(
        format!("{p} schema"),
        "write the JSON Schemas into schemas/json/",
    );
    text += &line(
        format!("{p} run --roles handlers"),
        "only the command handlers (scale roles apart)",
    );
    text += &line(
        format!("{p} run --console-addr 127.0.0.1:9465"),
        "with the web console (open it in a browser)",
    );
    text += &line(
        format!("{p} --log-format json run"),
        "JSON logs (RUST_LOG=debug for more)",
    );
    text += &line(
        format!("{p} --subject-prefix acme.shop run"),
        "serve under acme.shop.cmd.>, acme.shop.evt.>, …",
    );
    text += &line(
        format!("{p} projector status"),
        "positions and lag of the running projectors",
    );
    text += &line(
        format!("{p} projector rebuild <name>"),
        "rebuild a persisted projection without downtime",
    );
    text += &line(
        format!("{p} projector parked <name>"),
        "events parked after failing to apply",
    );
    text += &line(
        format!("{p} projector replay-parked <name>"),
        "apply them again after a fix",
    );
    text += &line(
        format!("{p} projector skip-parked <name> <stream> <seq>"),
        "give up on one for good",
    );
    text += &line(
        format!("{p} process status"),
        "process managers: positions, instances, deadlines",
    );
    text += &line(
        format!("{p} process parked <name>"),
        "triggers a process manager could not react to",
    );
    text += &line(
        format!("{p} process replay-parked <name>"),
        "react to them again after a fix",
    );
    text += &line(
        format!("{p} process skip-parked <name> <stream> <seq>"),
        "give up on one for good",
    );
    text += "
Authentication ([nats.auth] and [nats.tls] in the settings file, or):
  JETSOURCE_NATS_TOKEN, JETSOURCE_NATS_USER + JETSOURCE_NATS_PASSWORD,
  JETSOURCE_NATS_NKEY_SEED_FILE, JETSOURCE_NATS_CREDS,
  JETSOURCE_NATS_TLS_CA, JETSOURCE_NATS_TLS_CERT + JETSOURCE_NATS_TLS_KEY

Exit codes: 0 ok or accepted; 1 rejected, no such aggregate (rewind) or stale files (schema --check);
2 bad usage or settings; 3 NATS unreachable or no answer.";
    text
}

/// The first hosted aggregate type, its first command and a body for it
/// (its required fields, with placeholder values); placeholders when none
/// is hosted.
fn first_command(app: &App) -> (String, String, String) {
    let Some(schemas) = app.aggregate_schemas().first() else {
        return ("<type>".into(), "<command>".into(), "{}".into());
    };
    let variant = schemas.commands["oneOf"]
        .as_array()
        .and_then(|variants| variants.first());
    let name = variant
        .and_then(|v| v["required"].as_array())
        .and_then(|r| r.first())
        .and_then(|name| name.as_str());
    let (Some(variant), Some(name)) = (variant, name) else {
        return (
            schemas.aggregate_type.to_string(),
            "<command>".into(),
            "{}".into(),
        );
    };
    let fields = &variant["properties"][name];
    let mut body = serde_json::Map::new();
    for field in fields["required"].as_array().into_iter().flatten() {
        let Some(field) = field.as_str() else {
            continue;
        };
        let placeholder = match fields["properties"][field]["type"].as_str() {
            Some("integer") | Some("number") => serde_json::json!(1),
            Some("boolean") => serde_json::json!(true),
            Some("array") => serde_json::json!([]),
            Some("object") => serde_json::json!({}),
            _ => serde_json::json!("..."),
        };
        body.insert(field.to_string(), placeholder);
    }
    (
        schemas.aggregate_type.to_string(),
        name.to_string(),
        serde_json::Value::Object(body).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_name_the_applications_own_aggregate_and_subcommands() {
        let app = App::new().aggregate::<jetsource_reference::account::Account>();
        let text = after_help(&app, "bank", &[]);
        assert!(
            text.contains(r#"bank send account id-1 open '{"owner":"..."}'"#),
            "{text}"
        );
        assert!(text.contains("bank rewind account id-1"), "{text}");
        assert!(!text.contains("blogpost"), "{text}");
        assert!(!text.contains(" demo"), "no demo of its own: {text}");
        let text = after_help(&app, "bank", &["demo".to_string()]);
        assert!(text.contains("bank demo"), "{text}");
        let none = after_help(&App::new(), "x", &[]);
        assert!(none.contains("x send <type> id-1 <command>"), "{none}");
    }
}
