//! Another language attaches a projector from the contract alone: the
//! Python example builds the blog listing with nats-py, and it equals the
//! built-in `blogposts` projection's `query.blogposts.list`.

use jetsource::blog::BlogPost;
use jetsource::blog_projection::BlogPosts;
use jetsource::client::{CommandClient, SendOptions};
use jetsource::projector::ProjectorRuntime;
use jetsource::schemas::CommandReply;
use jetsource::Runtime;
use jetsource_test_server::NatsServer;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The nats-py release the example is tested with.
const NATS_PY: &str = "2.16.0";

/// A project-local nats-py under `<tools>/python`, installed with pip when
/// missing; parallel callers wait on a lock file.
fn nats_py() -> PathBuf {
    let tools = jetsource_test_server::tools_dir();
    let target = tools.join("python");
    let marker = target.join(format!("nats_py-{NATS_PY}.dist-info"));
    if marker.is_dir() {
        return target;
    }
    std::fs::create_dir_all(&tools).expect("the tools folder");
    let lock = File::create(tools.join(".python-install.lock")).expect("the install lock");
    lock.lock().expect("locking the install lock");
    if marker.is_dir() {
        return target;
    }
    let out = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--upgrade",
            "--target",
        ])
        .arg(&target)
        .arg(format!("nats-py=={NATS_PY}"))
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "installing nats-py=={NATS_PY} into {}: {}",
        target.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    target
}

fn run_example(python_path: &Path, url: &str) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python/blog_listing.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(url)
        .env("PYTHONPATH", python_path)
        .stdin(Stdio::null())
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "blog_listing.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the example prints JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_listing_equals_the_built_in_one() {
    let python_path = tokio::task::spawn_blocking(nats_py)
        .await
        .expect("install task");
    let server = NatsServer::new();
    let client = jetsource::connect(&server.client_url())
        .await
        .expect("connect");
    let runtime = Runtime::builder(client.clone())
        .aggregate::<BlogPost>()
        .build()
        .await
        .expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(runtime.run(async {
        let _ = stopped.await;
    }));
    while client
        .request("cmd.blogpost.probe.nothing", "{}".into())
        .await
        .is_err()
    {
        tokio::task::yield_now().await;
    }

    let commands = CommandClient::new(client.clone());
    let mut last_seq = 0;
    for i in 0..12 {
        let id = format!("post-{i:02}");
        let mut sent = vec![(
            "create",
            serde_json::json!({"title": format!("Post {i}"), "body": format!("Text {i}"), "publish": i % 3 == 0}),
        )];
        if i % 2 == 0 {
            sent.push((
                "change_title",
                serde_json::json!({"title": format!("Post {i}, again")}),
            ));
        }
        if i % 3 == 1 {
            sent.push(("publish", serde_json::json!({})));
        }
        for (command, body) in sent {
            match commands
                .send(
                    "blogpost",
                    &id,
                    command,
                    body.to_string(),
                    &SendOptions::default(),
                )
                .await
                .expect("sent")
            {
                CommandReply::Accepted(a) => {
                    last_seq = a.events.last().map(|e| e.seq).unwrap_or(last_seq)
                }
                CommandReply::Rejected(r) => panic!("{command} on {id} rejected: {r:?}"),
            }
        }
    }

    let running = ProjectorRuntime::builder(client.clone())
        .in_memory(BlogPosts::default())
        .build()
        .await
        .expect("projectors")
        .start()
        .await
        .expect("start");
    let mut h = async_nats::HeaderMap::new();
    h.insert("After-Seq", last_seq.to_string().as_str());
    let reply = client
        .send_request(
            "query.blogposts.list",
            async_nats::Request::new()
                .headers(h)
                .timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("a reply");
    let built_in: serde_json::Value = serde_json::from_slice(&reply.payload).expect("JSON");
    assert_eq!(built_in["status"], "ok", "{built_in}");
    assert_eq!(
        built_in["result"]["posts"].as_array().map(Vec::len),
        Some(12)
    );

    let url = server.client_url();
    let python = tokio::task::spawn_blocking(move || run_example(&python_path, &url))
        .await
        .expect("example task");
    assert_eq!(python, built_in["result"]);

    running.stop().await.expect("stop");
    let _ = stop.send(());
}
