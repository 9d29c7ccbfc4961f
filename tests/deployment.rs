//! compose.yaml and the Dockerfile, checked without a Docker engine: the
//! services, the volume, the mounted configs and what they must say.

use std::collections::BTreeMap;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A YAML block mapping, as far as compose.yaml uses one: each key with the
/// text nested under it (or its inline value). Comments and blank lines
/// are dropped; a line's depth is its indentation.
fn children(text: &str) -> BTreeMap<String, String> {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let Some(depth) = lines.iter().map(|l| indent(l)).min() else {
        return BTreeMap::new();
    };
    let mut map = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in lines {
        if indent(line) == depth && !line.trim_start().starts_with("- ") {
            if let Some((key, body)) = current.take() {
                map.insert(key, body);
            }
            let (key, value) = line.trim().split_once(':').expect("a key");
            current = Some((key.to_string(), value.trim().to_string()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push('\n');
            body.push_str(line);
        }
    }
    if let Some((key, body)) = current {
        map.insert(key, body);
    }
    map
}

fn list(block: &str) -> Vec<String> {
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect()
}

#[test]
fn compose_runs_nats_with_a_volume_and_jetsource_with_its_config() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("compose.yaml")).expect("compose.yaml");
    let top = children(&text);
    let services = children(&top["services"]);
    for name in ["nats", "jetsource", "handlers", "feedback", "projectors"] {
        assert!(services.contains_key(name), "service {name} is missing");
    }

    // nats: the official image, new enough, JetStream syncing every write,
    // its store in a named volume.
    let nats = children(&services["nats"]);
    let image = &nats["image"];
    let version = image
        .strip_prefix("nats:")
        .expect("the official nats image")
        .split('-')
        .next()
        .expect("a tag");
    let parts: Vec<u32> = version
        .split('.')
        .map(|p| p.parse().expect("numeric tag"))
        .collect();
    assert!(parts >= vec![2, 12], "nats {version} is older than 2.12");
    let volumes = list(&nats["volumes"]);
    let config_mount = volumes
        .iter()
        .find(|v| v.ends_with(":/etc/nats/nats-server.conf:ro"))
        .expect("the server config is mounted");
    let host_path = config_mount.split(':').next().expect("a host path");
    let server_conf = std::fs::read_to_string(Path::new(ROOT).join(host_path))
        .expect("the mounted server config exists");
    assert!(server_conf.contains("sync_interval: always"));
    assert!(server_conf.contains("store_dir: \"/data\""));
    assert!(nats["command"].contains("/etc/nats/nats-server.conf"));
    assert!(
        volumes.iter().any(|v| v == "nats-data:/data"),
        "{volumes:?}"
    );
    assert!(children(&top["volumes"]).contains_key("nats-data"));

    // jetsource: built from the Dockerfile here, its settings mounted where
    // the image reads them, pointed at the nats service.
    let jetsource = children(&services["jetsource"]);
    assert_eq!(jetsource["build"], ".");
    let dockerfile =
        std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("a Dockerfile");
    assert!(dockerfile.contains("JETSOURCE_CONFIG=/etc/jetsource/jetsource.toml"));
    assert!(dockerfile.contains("--bin jetsource"));
    for name in ["jetsource", "handlers", "feedback", "projectors"] {
        let service = children(&services[name]);
        assert!(
            list(&service["volumes"])
                .iter()
                .any(|v| v == "./config/jetsource.toml:/etc/jetsource/jetsource.toml:ro"),
            "{name} does not mount the settings"
        );
        let env = children(&service["environment"]);
        assert_eq!(env["JETSOURCE_NATS_URL"], "nats://nats:4222", "{name}");
        assert!(service["depends_on"].contains("service_healthy"), "{name}");
    }

    // The role services run one role each, and together all of them.
    let mut roles: Vec<String> = ["handlers", "feedback", "projectors"]
        .iter()
        .map(|name| {
            let command = &children(&services[*name])["command"];
            let role = command
                .split("\"--roles\", \"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("--roles in the command");
            assert_eq!(role, *name);
            role.to_string()
        })
        .collect();
    roles.sort();
    let mut all: Vec<String> = jetsource::config::ROLES
        .iter()
        .map(|r| r.to_string())
        .collect();
    all.sort();
    assert_eq!(roles, all);
}

#[test]
fn the_parser_sees_nesting() {
    let map = children("a:\n  b: 1\n  c:\n    - x\nd: 2\n");
    assert_eq!(map["d"], "2");
    let a = children(&map["a"]);
    assert_eq!(a["b"], "1");
    assert_eq!(list(&a["c"]), ["x"]);
}
