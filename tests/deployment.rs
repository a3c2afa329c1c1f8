//! Static checks of what deploys the bridge: the Dockerfile, the compose stack, the Helm
//! chart, the alert rules and the Grafana dashboard. Nothing here needs Docker or Helm
//! (scripts/check-deploy.sh runs those): files are parsed, cross-checked with each other
//! and with the real configuration loader, and the metric names they use are looked up
//! on a running bridge's /metrics. One test runs the bridge against the RabbitMQ broker
//! on 127.0.0.1:5672 through TLS signed by a private CA, as the deployment guide
//! describes (it needs the `openssl` and `socat` commands).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vizion_bridge::settings::Settings;

// The binaries under test, found as the API tests find them.
#[path = "api/helpers/binaries.rs"]
mod binaries;
use binaries::{bridge_binary, sim_binary};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A YAML file as JSON values (what Helm and the schema validator see), with merge
/// keys (`<<: *anchor`) applied as docker compose applies them.
fn yaml(path: &str) -> Value {
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"));
    value
        .apply_merge()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::to_value(value).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json(path: &str) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"))
}

fn files_under(dir: &str, extensions: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root().join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if extensions
                .iter()
                .any(|ext| path.extension().is_some_and(|e| e == *ext))
            {
                let relative = path.strip_prefix(root()).unwrap();
                found.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    found
}

const CHART: &str = "helm/vizion-bridge";
const COMPOSE: &str = "docker-compose.yml";
const COMPOSE_CONFIG: &str = "deploy/compose/vizion-bridge.toml";
const ALERTS: &str = "helm/vizion-bridge/files/alerts.yml";
const DASHBOARD: &str = "helm/vizion-bridge/files/dashboard.json";

fn chart_file(name: &str) -> String {
    format!("{CHART}/{name}")
}

fn templates() -> Vec<(String, String)> {
    files_under(&chart_file("templates"), &["yaml", "tpl", "txt"])
        .into_iter()
        .map(|path| {
            let text = read(&path);
            (path, text)
        })
        .collect()
}

// ---------------------------------------------------------------- parsing

#[test]
fn plain_yaml_and_json_files_parse() {
    let mut yaml_files = vec![
        COMPOSE.to_owned(),
        chart_file("Chart.yaml"),
        chart_file("values.yaml"),
        ALERTS.to_owned(),
    ];
    yaml_files.extend(files_under("deploy", &["yml", "yaml"]));
    for path in &yaml_files {
        let value = yaml(path);
        assert!(value.is_object(), "{path}: expected a mapping at the top");
    }
    for path in [DASHBOARD.to_owned(), chart_file("values.schema.json")] {
        assert!(json(&path).is_object(), "{path}: expected an object");
    }
    let chart = yaml(&chart_file("Chart.yaml"));
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["name"], "vizion-bridge");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "the chart's appVersion (the default image tag) follows the crate's version"
    );
}

/// Helm templates are not YAML until rendered: check that every action is closed, and
/// that `if`/`range`/`with`/`define` blocks are closed by as many `end`s, in order.
#[test]
fn helm_templates_have_balanced_actions_and_blocks() {
    for (path, text) in templates() {
        let mut rest = text.as_str();
        let mut blocks: Vec<String> = Vec::new();
        let mut line = 1;
        while let Some(start) = rest.find("{{") {
            line += rest[..start].matches('\n').count();
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .unwrap_or_else(|| panic!("{path}:{line}: `{{{{` is never closed"));
            let action = &after[..end];
            assert!(
                !action.contains("{{"),
                "{path}:{line}: `{{{{` opened inside another action"
            );
            let body = action.trim_start_matches('-').trim_end_matches('-').trim();
            if !body.starts_with("/*") {
                let keyword = body.split_whitespace().next().unwrap_or("");
                match keyword {
                    "if" | "range" | "with" | "define" | "block" => {
                        blocks.push(format!("{keyword} at line {line}"))
                    }
                    "else" => assert!(!blocks.is_empty(), "{path}:{line}: `else` outside a block"),
                    "end" => {
                        blocks
                            .pop()
                            .unwrap_or_else(|| panic!("{path}:{line}: `end` without a block"));
                    }
                    _ => {}
                }
            } else {
                assert!(body.ends_with("*/"), "{path}:{line}: unterminated comment");
            }
            line += action.matches('\n').count();
            rest = &after[end + 2..];
        }
        assert!(
            !rest.contains("}}"),
            "{path}: `}}}}` without an opening `{{{{`"
        );
        assert!(blocks.is_empty(), "{path}: blocks never ended: {blocks:?}");
    }
}

// ---------------------------------------------------------------- values and schema

fn schema_validator() -> jsonschema::Validator {
    let schema = json(&chart_file("values.schema.json"));
    jsonschema::draft7::options()
        .build(&schema)
        .expect("values.schema.json is a valid draft-07 schema")
}

fn schema_errors(values: &Value) -> Vec<String> {
    schema_validator()
        .iter_errors(values)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn default_values() -> Value {
    yaml(&chart_file("values.yaml"))
}

#[test]
fn values_yaml_satisfies_the_schema() {
    let errors = schema_errors(&default_values());
    assert!(errors.is_empty(), "values.yaml: {errors:#?}");
}

#[test]
fn schema_rejects_unknown_names_and_wrong_types() {
    type Change = fn(&mut Value);
    let cases: &[(&str, Change)] = &[
        ("misspelt top-level value", |v| {
            v["replicaCont"] = 3.into();
        }),
        ("misspelt nested value", |v| {
            v["ingress"]["hots"] = "hooks.example.com".into();
        }),
        ("misspelt config section", |v| {
            v["config"]["ingets"] = serde_json::json!({"path": "/x"});
        }),
        ("misspelt webhook key field", |v| {
            v["secrets"]["webhookKeys"][0]["secert"] = "s".into();
        }),
        ("string for an integer", |v| {
            v["replicaCount"] = "two".into();
        }),
        ("string for a port", |v| {
            v["ports"]["http"] = "8080".into();
        }),
        ("string for a boolean", |v| {
            v["spool"]["enabled"] = "yes".into();
        }),
        ("unknown sink", |v| {
            v["config"]["sinks"] = serde_json::json!(["kafak"]);
        }),
        ("no webhook key", |v| {
            v["secrets"]["webhookKeys"] = serde_json::json!([]);
        }),
        ("key id unusable as a Secret key", |v| {
            v["secrets"]["webhookKeys"][0]["keyId"] = "key one".into();
        }),
        ("duration without a unit", |v| {
            v["metrics"]["prometheusRule"]["noWebhookFor"] = "6".into();
        }),
    ];
    for (what, change) in cases {
        let mut values = default_values();
        change(&mut values);
        assert!(
            !schema_errors(&values).is_empty(),
            "the schema accepted values with a {what}"
        );
    }
}

/// The chart's `config` takes every section of the bridge's configuration: the example
/// configuration sets every key, and the schema refuses a `config` section it does not
/// list, so each of the example's tables must be listed.
#[test]
fn schema_config_takes_every_section_of_the_configuration() {
    let example = toml_file("config/vizion-bridge.example.toml");
    let schema = json(&chart_file("values.schema.json"));
    let sections = &schema["properties"]["config"]["properties"];
    let missing: Vec<&String> = example
        .keys()
        .filter(|section| sections.get(section.as_str()).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "values.schema.json refuses config sections the bridge has: {missing:?}"
    );
}

/// Every `.Values.a.b` a template reads is a value of values.yaml, so that a typo in a
/// template cannot silently render as empty.
#[test]
fn every_value_a_template_reads_exists_in_values_yaml() {
    let values = default_values();
    let mut missing = Vec::new();
    for (path, text) in templates() {
        for reference in values_references(&text) {
            let mut node = &values;
            for key in reference.split('.') {
                node = &node[key];
            }
            if node.is_null() {
                missing.push(format!("{path}: .Values.{reference}"));
            }
        }
    }
    assert!(missing.is_empty(), "not in values.yaml: {missing:#?}");
}

/// And the other way round: every value is read by some template (or a value above it
/// is, e.g. `podSecurityContext` rendered whole), and is listed in the chart's README.
#[test]
fn every_value_is_used_and_documented() {
    let values = default_values();
    let used: BTreeSet<String> = templates()
        .iter()
        .flat_map(|(_, text)| values_references(text))
        .collect();
    let readme = read(&chart_file("README.md"));
    let mut leaves = Vec::new();
    collect_leaves(&values, String::new(), &mut leaves);
    let mut unused = Vec::new();
    let mut undocumented = Vec::new();
    for leaf in &leaves {
        let prefixes: Vec<&str> = leaf
            .match_indices('.')
            .map(|(i, _)| &leaf[..i])
            .chain([leaf.as_str()])
            .collect();
        if !prefixes.iter().any(|p| used.contains(*p)) {
            unused.push(leaf.clone());
        }
        let documented = prefixes.iter().any(|p| {
            readme.contains(&format!("| `{p}` |"))
                || readme.contains(&format!(
                    "| `{}` |",
                    p.replace("webhookKeys.", "webhookKeys[].")
                ))
        });
        if !documented {
            undocumented.push(leaf.clone());
        }
    }
    assert!(unused.is_empty(), "values no template reads: {unused:#?}");
    assert!(
        undocumented.is_empty(),
        "values missing from the README's table: {undocumented:#?}"
    );
}

/// `a.b.c` for each `.Values.a.b.c` in a template.
fn values_references(text: &str) -> Vec<String> {
    text.match_indices(".Values.")
        .map(|(i, m)| {
            text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.')
                .collect::<String>()
                .trim_end_matches('.')
                .to_owned()
        })
        .filter(|r| !r.is_empty())
        .collect()
}

/// Paths of the leaves of values.yaml. Maps that are free-form by nature (annotations,
/// labels, the bridge's own config) and list items count as leaves.
fn collect_leaves(node: &Value, path: String, out: &mut Vec<String>) {
    match node {
        Value::Object(map) if !map.is_empty() && path != "config" => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                collect_leaves(child, child_path, out);
            }
        }
        _ => out.push(path),
    }
}

// ---------------------------------------------------------------- chart content

#[test]
fn chart_pods_are_hardened_and_drain_before_being_killed() {
    let values = default_values();
    let security = &values["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(values["podSecurityContext"]["runAsUser"], 10001);

    let grace = values["terminationGracePeriodSeconds"].as_u64().unwrap();
    let drain = values["shutdown"]["delaySeconds"].as_u64().unwrap()
        + values["shutdown"]["timeoutSeconds"].as_u64().unwrap();
    assert!(
        grace > drain,
        "grace period {grace}s is not above the drain {drain}s"
    );

    let workload = read(&chart_file("templates/workload.yaml"));
    for needle in [
        "path: /healthz",
        "path: /readyz",
        "checksum/config:",
        "checksum/secret:",
        "terminationGracePeriodSeconds:",
        "volumeClaimTemplates:",
        "topologySpreadConstraints:",
    ] {
        assert!(workload.contains(needle), "workload.yaml lacks `{needle}`");
    }
    assert!(read(&chart_file("templates/_helpers.tpl")).contains("StatefulSet"));
}

/// The chart's ports and the image's are the bridge's defaults, and the image runs as
/// the user the chart's pods run as.
#[test]
fn dockerfile_matches_the_service_and_the_chart() {
    let dockerfile = read("Dockerfile");
    let defaults = Settings::default();
    let http = defaults.server.listen.port();
    let metrics = defaults.metrics.listen.port();
    assert!(
        dockerfile.contains(&format!("EXPOSE {http} {metrics}")),
        "EXPOSE should name the default ports {http} and {metrics}"
    );
    let values = default_values();
    assert_eq!(values["ports"]["http"], http);
    assert_eq!(values["ports"]["metrics"], metrics);

    let user = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the image sets a USER");
    let uid = user.split(':').next().unwrap();
    assert_ne!(uid, "0", "the image must not run as root");
    assert_eq!(values["podSecurityContext"]["runAsUser"].to_string(), uid);

    for needle in [
        "cargo chef cook",
        "--bins",
        "/out/vizion-bridge",
        "/out/vizion-sim",
        "org.opencontainers.image.title",
        "VOLUME",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks `{needle}`");
    }
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target"));
}

// ---------------------------------------------------------------- compose

fn compose() -> Value {
    yaml(COMPOSE)
}

fn compose_service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    let service = &compose["services"][name];
    assert!(service.is_object(), "compose has no service `{name}`");
    service
}

/// `(host path, container path)` of each bind mount of a service.
fn bind_mounts(service: &Value) -> Vec<(String, String)> {
    service["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter(|v| v.starts_with("./"))
        .map(|v| {
            let mut parts = v.split(':');
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect()
}

fn toml_file(path: &str) -> toml::Table {
    read(path)
        .parse()
        .unwrap_or_else(|e| panic!("{path} is not TOML: {e}"))
}

#[test]
fn compose_refers_only_to_files_that_exist() {
    let compose = compose();
    let mut referenced = Vec::new();
    for (name, service) in compose["services"].as_object().unwrap() {
        for (host, _) in bind_mounts(service) {
            referenced.push((name.clone(), host));
        }
        if let Some(build) = service.get("build") {
            let context = build["context"].as_str().unwrap();
            let dockerfile = build["dockerfile"].as_str().unwrap_or("Dockerfile");
            referenced.push((name.clone(), format!("{context}/{dockerfile}")));
        }
    }
    for (name, secret) in compose["secrets"].as_object().unwrap() {
        referenced.push((
            format!("secret {name}"),
            secret["file"].as_str().unwrap().to_owned(),
        ));
    }
    assert!(referenced.len() >= 8, "{referenced:?}");
    for (by, path) in referenced {
        assert!(root().join(&path).exists(), "{by} refers to missing {path}");
    }
}

/// Kafka keeps its log where the `kafka-data` volume is mounted: without KAFKA_LOG_DIRS
/// the apache/kafka image writes it inside the container, and recreating the container
/// loses every message while the volume stays empty.
#[test]
fn compose_kafka_keeps_its_log_on_its_volume() {
    let compose = compose();
    let kafka = compose_service(&compose, "kafka");
    let volume_targets: Vec<&str> = kafka["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter(|v| !v.starts_with("./"))
        .filter_map(|v| v.split(':').nth(1))
        .collect();
    let log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
        .as_str()
        .expect("kafka sets KAFKA_LOG_DIRS");
    for dir in log_dirs.split(',') {
        assert!(
            volume_targets
                .iter()
                .any(|target| dir == *target || dir.starts_with(&format!("{target}/"))),
            "Kafka's log directory {dir} is on no volume of kafka ({volume_targets:?})"
        );
    }
}

#[test]
fn compose_wiring_matches_the_bridge_configuration() {
    let compose = compose();
    let config = toml_file(COMPOSE_CONFIG);
    let port_of = |key: &str| -> String {
        config[key]["listen"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned()
    };
    let (http, metrics) = (port_of("server"), port_of("metrics"));
    let path = config["ingest"]["path"].as_str().unwrap();

    let bridge = compose_service(&compose, "bridge");
    let published: Vec<String> = bridge["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().rsplit(':').next().unwrap().to_owned())
        .collect();
    assert!(
        published.contains(&http),
        "bridge publishes {published:?}, not {http}"
    );
    assert!(
        published.contains(&metrics),
        "bridge publishes {published:?}, not {metrics}"
    );
    let health = bridge["healthcheck"]["test"].to_string();
    assert!(
        health.contains(&format!("127.0.0.1/{http}")) && health.contains("/readyz"),
        "{health}"
    );

    // The mounted file is the one the command reads.
    let command: Vec<&str> = bridge["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_arg = command[command.iter().position(|a| *a == "--config").unwrap() + 1];
    assert!(
        bind_mounts(bridge)
            .iter()
            .any(|(host, target)| host == &format!("./{COMPOSE_CONFIG}") && target == config_arg),
        "{COMPOSE_CONFIG} is not mounted at {config_arg}"
    );

    // Secret files named in the configuration are the compose secrets of the service.
    let secrets: Vec<&str> = bridge["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let text = read(COMPOSE_CONFIG);
    for file in text.match_indices("/run/secrets/").map(|(i, _)| {
        text[i..]
            .split('"')
            .next()
            .unwrap()
            .trim_start_matches("/run/secrets/")
    }) {
        assert!(
            secrets.contains(&file),
            "secret {file} is not given to the bridge"
        );
    }

    // Spool and data directories are volumes, not the read-only root.
    assert_eq!(bridge["read_only"], true);
    let volumes: Vec<String> = bridge["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().split(':').nth(1).unwrap().to_owned())
        .collect();
    for dir in [
        config["spool"]["dir"].as_str().unwrap(),
        config["storage"]["data_dir"].as_str().unwrap(),
    ] {
        assert!(
            volumes.iter().any(|v| v == dir),
            "{dir} is not a volume: {volumes:?}"
        );
    }

    // Brokers: the addresses the bridge uses are those the broker services offer.
    let kafka = compose_service(&compose, "kafka");
    let brokers = config["kafka"]["brokers"].as_str().unwrap();
    assert!(
        kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
            .as_str()
            .unwrap()
            .contains(&format!("://{brokers}")),
        "kafka does not advertise {brokers}"
    );
    let rabbitmq = compose_service(&compose, "rabbitmq");
    let url = read("deploy/compose/secrets/rabbitmq-url");
    let credentials = format!(
        "amqp://{}:{}@rabbitmq:5672/",
        rabbitmq["environment"]["RABBITMQ_DEFAULT_USER"]
            .as_str()
            .unwrap(),
        rabbitmq["environment"]["RABBITMQ_DEFAULT_PASS"]
            .as_str()
            .unwrap()
    );
    assert!(
        url.starts_with(&credentials),
        "rabbitmq-url does not match the broker's user"
    );

    // Who may send: the compose network.
    let subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
        .as_str()
        .unwrap();
    let allowed = config["ingest"]["allowed_sources"].as_array().unwrap();
    assert!(
        allowed.iter().any(|a| a.as_str() == Some(subnet)),
        "{allowed:?}"
    );

    // The simulator posts to the bridge's webhook path and port.
    let sim = compose_service(&compose, "sim").to_string();
    assert!(
        sim.contains(&format!("http://bridge:{http}{path}")),
        "the simulator does not post to http://bridge:{http}{path}"
    );

    // Prometheus scrapes the metrics port and loads the chart's rule file.
    let prometheus_config = yaml("deploy/prometheus/prometheus.yml");
    let targets =
        prometheus_config["scrape_configs"][0]["static_configs"][0]["targets"].to_string();
    assert!(targets.contains(&format!("bridge:{metrics}")), "{targets}");
    let prometheus = compose_service(&compose, "prometheus");
    let rule_file = prometheus_config["rule_files"][0].as_str().unwrap();
    assert!(
        bind_mounts(prometheus)
            .iter()
            .any(|(host, target)| host == &format!("./{ALERTS}") && target == rule_file),
        "prometheus does not load {ALERTS} as {rule_file}"
    );

    // Grafana gets the dashboard where its provider looks.
    let provider = yaml("deploy/grafana/provisioning/dashboards/vizion-bridge.yml");
    let folder = provider["providers"][0]["options"]["path"]
        .as_str()
        .unwrap();
    let grafana = compose_service(&compose, "grafana");
    assert!(bind_mounts(grafana)
        .iter()
        .any(|(host, target)| host == &format!("./{DASHBOARD}") && target.starts_with(folder)));

    // Every service but the simulator has a health check, and dependencies wait on it.
    for (name, service) in compose["services"].as_object().unwrap() {
        if name != "sim" {
            assert!(
                service["healthcheck"].is_object(),
                "{name} has no health check"
            );
        }
        for (dependency, condition) in service["depends_on"].as_object().into_iter().flatten() {
            assert!(
                compose["services"][dependency].is_object(),
                "{name} depends on unknown {dependency}"
            );
            assert!(condition["condition"].is_string(), "{name} → {dependency}");
        }
    }
}

// ---------------------------------------------------------------- the real loader

fn check_config(path: &Path) -> Output {
    Command::new(bridge_binary())
        .arg("check-config")
        .arg("--config")
        .arg(path)
        .env_remove("VIZION_BRIDGE_CONFIG")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// The compose bridge's configuration, with the compose secrets where the container
/// would see them, is accepted by `vizion-bridge check-config`.
#[test]
fn compose_bridge_configuration_passes_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let compose = compose();
    for (name, secret) in compose["secrets"].as_object().unwrap() {
        std::fs::copy(
            root().join(secret["file"].as_str().unwrap()),
            dir.path().join(name),
        )
        .unwrap();
    }
    let secrets_dir = format!("{}/", dir.path().display());
    let text = read(COMPOSE_CONFIG).replace("/run/secrets/", &secrets_dir);
    let path = dir.path().join("vizion-bridge.toml");
    std::fs::write(&path, text).unwrap();
    let output = check_config(&path);
    assert!(
        output.status.success(),
        "check-config refused {COMPOSE_CONFIG}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The configuration file the chart renders from `values`: `config` with the keys the
/// chart sets itself on top, as `vizion-bridge.configToml` in _helpers.tpl sets them,
/// except that secret files and the data directory are under `dir` (where the test
/// writes the secrets) instead of the pod's mounts.
fn chart_config(values: &Value, dir: &Path) -> toml::Table {
    let mut config: toml::Table =
        serde_json::from_value(values["config"].clone()).expect("config is a table");
    let mut section = |name: &str, entries: Vec<(&str, toml::Value)>| {
        let mut table = config
            .remove(name)
            .and_then(|v| v.as_table().cloned())
            .unwrap_or_default();
        for (key, value) in entries {
            table.insert(key.into(), value);
        }
        config.insert(name.into(), table.into());
    };
    let secret_file = |name: &str, content: &str| -> toml::Value {
        let file = dir.join(name);
        std::fs::write(&file, format!("{content}\n")).unwrap();
        file.display().to_string().into()
    };
    let address = values["listenAddress"].as_str().unwrap();
    section(
        "server",
        vec![
            (
                "listen",
                format!("{address}:{}", values["ports"]["http"]).into(),
            ),
            (
                "shutdown_delay",
                format!("{}s", values["shutdown"]["delaySeconds"]).into(),
            ),
            (
                "shutdown_timeout",
                format!("{}s", values["shutdown"]["timeoutSeconds"]).into(),
            ),
        ],
    );
    section(
        "metrics",
        vec![(
            "listen",
            format!("{address}:{}", values["ports"]["metrics"]).into(),
        )],
    );
    section(
        "storage",
        vec![("data_dir", dir.join("data").display().to_string().into())],
    );
    let secrets = &values["secrets"];
    let keys: Vec<toml::Value> = secrets["webhookKeys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            let key_id = key["keyId"].as_str().unwrap();
            let mut entry = toml::Table::new();
            entry.insert("key_id".into(), key_id.into());
            entry.insert(
                "secret_file".into(),
                secret_file(&format!("webhook-{key_id}"), "a-webhook-secret"),
            );
            toml::Value::Table(entry)
        })
        .collect();
    section("auth", vec![("secrets", keys.into())]);
    if secrets["rabbitmqUrl"]["enabled"] == true {
        let url = secret_file(
            "rabbitmq-url",
            "amqp://user:password@mq.example.com:5672/%2f",
        );
        section("rabbitmq", vec![("url_file", url)]);
    }
    if secrets["redisUrl"]["enabled"] == true {
        let url = secret_file("redis-url", "redis://:password@redis.example.com:6379/0");
        section("dedup", vec![("redis_url_file", url)]);
    }
    if secrets["vizionApiKey"]["enabled"] == true {
        let key = secret_file("vizion-api-key", "a-vizion-api-key");
        section("vizion_api", vec![("api_key_file", key)]);
    }
    if let Some(properties) = secrets["kafkaProperties"]
        .as_object()
        .filter(|p| !p.is_empty())
    {
        let mut files = toml::Table::new();
        for property in properties.keys() {
            files.insert(
                property.clone(),
                secret_file(&format!("kafka-{property}"), "x"),
            );
        }
        section("kafka", vec![("properties_file", files.into())]);
    }
    config
}

fn assert_chart_config_passes_check_config(values: &Value, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = chart_config(values, dir.path());
    let path = dir.path().join("vizion-bridge.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    let output = check_config(&path);
    assert!(
        output.status.success(),
        "check-config refused the configuration rendered from {what}:\n{}\n{}",
        String::from_utf8_lossy(&output.stderr),
        std::fs::read_to_string(&path).unwrap()
    );
}

#[test]
fn chart_default_configuration_passes_check_config() {
    assert_chart_config_passes_check_config(&default_values(), "the default values");
}

/// Values as Helm sees them: the user's file merged over values.yaml.
fn merged(mut base: Value, over: &Value) -> Value {
    if let (Some(base_map), Some(over_map)) = (base.as_object_mut(), over.as_object()) {
        for (key, value) in over_map {
            let merged_value = match base_map.remove(key) {
                Some(existing) if existing.is_object() && value.is_object() => {
                    merged(existing, value)
                }
                _ => value.clone(),
            };
            base_map.insert(key.clone(), merged_value);
        }
        base
    } else {
        over.clone()
    }
}

/// The values files shown in docs/DEPLOYMENT.md are files of helm/vizion-bridge/ci/
/// (named in their first line), which scripts/check-deploy.sh lints, renders and
/// validates with helm; here each also passes the schema, and what the chart renders
/// from it passes `check-config`.
#[test]
fn values_examples_in_the_deployment_guide_are_valid() {
    const MARK: &str = "# helm/vizion-bridge/ci/";
    let guide = read("docs/DEPLOYMENT.md");
    let examples: Vec<(&str, &str)> = guide
        .split("```yaml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .filter_map(|block| {
            let (first, rest) = block.split_once('\n')?;
            Some((first.strip_prefix(MARK)?, rest))
        })
        .collect();
    assert!(
        examples.len() >= 6,
        "Kafka, Strimzi (two), MSK, RabbitMQ and Redis examples: {}",
        examples.len()
    );
    for (name, example) in examples {
        let path = chart_file(&format!("ci/{name}"));
        assert_eq!(example, read(&path), "the guide's copy of {path} differs");
        let example: Value = serde_yaml_ng::from_str(example).unwrap();
        let values = merged(default_values(), &example);
        let errors = schema_errors(&values);
        assert!(errors.is_empty(), "{errors:#?}\nin {path}");
        assert_chart_config_passes_check_config(&values, &path);
    }
}

// ---------------------------------------------------------------- metrics

fn metric_names_in(text: &str) -> BTreeSet<String> {
    text.match_indices("vizion_bridge_")
        .map(|(i, _)| {
            text[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect::<String>()
        })
        .collect()
}

#[test]
fn alert_rules_are_complete_and_fit_the_chart() {
    let rules = yaml(ALERTS);
    let rules = rules["groups"][0]["rules"].as_array().unwrap();
    let mut names = BTreeSet::new();
    for rule in rules {
        let name = rule["alert"].as_str().expect("every rule is an alert");
        assert!(names.insert(name.to_owned()), "{name} twice");
        assert!(rule["expr"]
            .as_str()
            .is_some_and(|e| e.contains("vizion_bridge_")));
        assert!(
            ["critical", "warning", "info"].contains(&rule["labels"]["severity"].as_str().unwrap()),
            "{name}: severity"
        );
        for annotation in ["summary", "description"] {
            assert!(
                rule["annotations"][annotation].is_string(),
                "{name}: {annotation}"
            );
        }
    }
    for expected in [
        "VizionBridgeAuthFailuresRising",
        "VizionBridgePublishFailures",
        "VizionBridgeSinkDown",
        "VizionBridgeSpoolGrowing",
        "VizionBridgeSpoolOldEntries",
        "VizionBridgeNoWebhookAccepted",
        "VizionBridgeHighUnavailableRate",
    ] {
        assert!(names.contains(expected), "no alert {expected}");
    }
    // The PrometheusRule template swaps the window of this alert for the value:
    // the file's window must be the default, written once as a range.
    let window = default_values()["metrics"]["prometheusRule"]["noWebhookFor"]
        .as_str()
        .unwrap()
        .to_owned();
    let silence = rules
        .iter()
        .find(|r| r["alert"] == "VizionBridgeNoWebhookAccepted")
        .unwrap();
    assert_eq!(
        silence["expr"]
            .as_str()
            .unwrap()
            .matches(&format!("[{window}]"))
            .count(),
        1
    );
    let template = read(&chart_file("templates/prometheusrule.yaml"));
    assert!(template.contains(&format!("replace \"[{window}]\"")));
    assert!(template.contains("files/alerts.yml"));
}

/// The outcomes named by the first `outcome="…"` or `outcome=~"a|b"` matcher of a query.
fn outcomes_matched(expr: &str) -> Vec<String> {
    for (prefix, regex) in [("outcome=~\"", true), ("outcome=\"", false)] {
        if let Some(start) = expr.find(prefix) {
            let rest = &expr[start + prefix.len()..];
            let value = &rest[..rest.find('"').expect("a closed matcher")];
            return if regex {
                value.split('|').map(str::to_owned).collect()
            } else {
                vec![value.to_owned()]
            };
        }
    }
    Vec::new()
}

/// Every way a webhook is answered 503 is counted where 503s are watched: the alert on
/// their share and the dashboard's "Share answered 503" panel; and the dashboard's
/// description of the outcomes panel names every outcome.
#[test]
fn every_503_outcome_is_watched_by_the_alert_and_the_dashboard() {
    use actix_web::ResponseError;
    use vizion_bridge::delivery::{DeliveryError, SpoolError};
    use vizion_bridge::ingest::{BodyReadsFull, IngestError};
    use vizion_bridge::telemetry::Outcome;

    let retry_after = Duration::from_secs(1);
    let answered_503 = [
        IngestError::Overloaded { retry_after },
        IngestError::Unavailable {
            cause: DeliveryError::Timeout {
                sink: "kafka",
                timeout: retry_after,
            },
            retry_after,
        },
        IngestError::Unavailable {
            cause: DeliveryError::Spool(SpoolError::Full { max_bytes: 1 }),
            retry_after,
        },
        IngestError::BodyReadsFull {
            bound: BodyReadsFull::All,
            retry_after,
        },
        IngestError::BodyReadsFull {
            bound: BodyReadsFull::ClientShare,
            retry_after,
        },
        IngestError::ShuttingDown { retry_after },
    ];
    let rules = yaml(ALERTS);
    let alert = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "VizionBridgeHighUnavailableRate")
        .expect("the alert on the share of 503s");
    let alert_outcomes = outcomes_matched(alert["expr"].as_str().unwrap());
    let dashboard = json(DASHBOARD);
    let panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| std::iter::once(p).chain(p["panels"].as_array().into_iter().flatten()))
        .collect();
    let panel = |title: &str| -> &Value {
        panels
            .iter()
            .find(|p| p["title"] == title)
            .unwrap_or_else(|| panic!("no panel {title:?}"))
    };
    let share = panel("Share answered 503");
    let panel_outcomes = outcomes_matched(share["targets"][0]["expr"].as_str().unwrap());
    for error in &answered_503 {
        assert_eq!(error.status_code().as_u16(), 503, "{error}");
        let outcome = error.outcome().as_str().to_owned();
        assert!(
            alert_outcomes.contains(&outcome),
            "VizionBridgeHighUnavailableRate misses outcome {outcome} ({error})"
        );
        assert!(
            panel_outcomes.contains(&outcome),
            "the panel \"Share answered 503\" misses outcome {outcome} ({error})"
        );
    }
    // A full spool stops growing: the spool alert must still see it.
    let spool_growing = rules["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "VizionBridgeSpoolGrowing")
        .expect("the alert on a growing spool");
    assert!(
        outcomes_matched(spool_growing["expr"].as_str().unwrap()).contains(&"spool_full".into()),
        "VizionBridgeSpoolGrowing stops firing once the spool is full"
    );
    let by_outcome = panel("Webhooks per second by outcome")["description"]
        .as_str()
        .unwrap();
    for outcome in Outcome::ALL {
        assert!(
            by_outcome.contains(outcome.as_str()),
            "the outcomes panel's description does not name {}",
            outcome.as_str()
        );
    }
}

/// A panel whose unit is per second shows rates; a count (`increase`) in it is read
/// against the wrong unit unless an override gives its query a unit of its own.
#[test]
fn dashboard_panels_do_not_mix_rates_and_counts_on_one_unit() {
    let dashboard = json(DASHBOARD);
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("");
        let targets = panel["targets"].as_array().into_iter().flatten();
        let (rates, counts): (Vec<&Value>, Vec<&Value>) = targets
            .filter(|t| t["expr"].is_string())
            .partition(|t| !t["expr"].as_str().unwrap().contains("increase("));
        if rates.is_empty() || counts.is_empty() {
            continue;
        }
        let overridden: BTreeSet<&str> = panel["fieldConfig"]["overrides"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["matcher"]["id"] == "byFrameRefID")
            .filter(|o| {
                o["properties"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["id"] == "unit")
            })
            .filter_map(|o| o["matcher"]["options"].as_str())
            .collect();
        for count in counts {
            let reference = count["refId"].as_str().unwrap();
            assert!(
                overridden.contains(reference),
                "panel {title:?}: query {reference} is a count among rates, with no unit of its own"
            );
        }
    }
}

#[test]
fn dashboard_has_the_promised_rows() {
    let dashboard = json(DASHBOARD);
    let rows: Vec<&str> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        rows,
        ["Traffic", "Latency", "Security", "Delivery", "Spool", "Events"]
    );
    let mut ids = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "panel ids repeat"
        );
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            assert_eq!(
                expr.matches('(').count(),
                expr.matches(')').count(),
                "{expr}"
            );
            assert_eq!(
                expr.matches('{').count(),
                expr.matches('}').count(),
                "{expr}"
            );
        }
    }
}

/// A bridge started from the built binary, killed when dropped.
struct RunningBridge {
    child: Child,
    metrics_port: u16,
    /// Every line the bridge logged so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for RunningBridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bridge() -> RunningBridge {
    start_bridge_with(r#"sinks = ["file"]"#, &[])
}

/// A bridge whose configuration starts with `sinks` (the `sinks = …` line, and any
/// sink's own tables after it), with `env` set for the process.
fn start_bridge_with(sinks: &str, env: &[(&str, &str)]) -> RunningBridge {
    let dir = tempfile::tempdir().unwrap();
    let (sinks_line, sink_tables) = sinks.split_once('\n').unwrap_or((sinks, ""));
    let config = format!(
        r#"{sinks_line}
[server]
listen = "127.0.0.1:0"
[metrics]
listen = "127.0.0.1:0"
[log]
format = "json"
[ingest]
allowed_sources = ["127.0.0.1/32"]
[[auth.secrets]]
secret = "metrics-check-secret"
[storage]
data_dir = "{}"
{sink_tables}
"#,
        dir.path().join("data").display()
    );
    let path = dir.path().join("bridge.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(bridge_binary())
        .args(["serve", "--config"])
        .arg(&path)
        .env_remove("VIZION_BRIDGE_CONFIG")
        .env_remove("RUST_LOG")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The start-up line names the ports it got.
    let stderr = child.stderr.take().unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line.clone());
            if let Ok(entry) = serde_json::from_str::<Value>(&line) {
                let port = entry["metrics_port"]
                    .as_u64()
                    .or_else(|| entry["fields"]["metrics_port"].as_u64());
                if let Some(port) = port {
                    let _ = sender.send(port as u16);
                }
            }
        }
    });
    let metrics_port = receiver
        .recv_timeout(Duration::from_secs(30))
        .expect("the bridge logs its metrics port at start");
    RunningBridge {
        child,
        metrics_port,
        log,
        _dir: dir,
    }
}

impl RunningBridge {
    /// Waits up to `within` for `/metrics` to show `line`; false if it never does.
    fn wait_for_metric_line(&self, line: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if scrape(self.metrics_port).lines().any(|l| l == line) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    /// Waits up to `within` for a log line containing `needle`.
    fn wait_for_log(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(line) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return Some(line.clone());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

fn scrape(port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(mut stream) => {
                stream
                    .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                    .unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).unwrap();
                assert!(
                    answer.starts_with("HTTP/1.") && answer.contains(" 200 "),
                    "{answer}"
                );
                return answer;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("cannot reach /metrics: {e}"),
        }
    }
}

/// Every metric the dashboard and the alert rules query is one the running bridge
/// exports. Families without a series yet are listed by `# TYPE` on /metrics, so
/// nothing needs to happen first; a histogram's `_bucket`, `_sum` and `_count` count as
/// its name.
#[test]
fn dashboard_and_alerts_use_only_metrics_the_bridge_exports() {
    let bridge = start_bridge();
    let exposition = scrape(bridge.metrics_port);
    let mut exported: BTreeMap<String, String> = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            exported.insert(name.to_owned(), kind.to_owned());
        }
    }
    assert!(
        exported.contains_key("vizion_bridge_webhooks_total"),
        "{exposition}"
    );
    let exists = |name: &str| {
        exported.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| exported.get(base).is_some_and(|k| k == "histogram"))
            })
    };

    let mut missing: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (source, text) in [
        ("dashboard", read(DASHBOARD)),
        ("alert rules", read(ALERTS)),
    ] {
        let used = metric_names_in(&text);
        assert!(used.len() > 5, "{source} uses {used:?}");
        for name in used {
            if !exists(&name) {
                missing.entry(name).or_default().push(source);
            }
        }
    }
    let report: Vec<String> = missing
        .iter()
        .map(|(name, sources)| format!("{name} (used by {})", sources.join(" and ")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} metric name(s) used but not exported by the bridge's /metrics:\n  {}",
        report.len(),
        report.join("\n  ")
    );
}

/// The simulator's compose command uses only flags `vizion-sim serve` has, and reads the
/// webhook secret the bridge checks against.
#[test]
fn compose_simulator_command_uses_real_flags() {
    let compose = compose();
    let sim = compose_service(&compose, "sim");
    let command: Vec<&str> = sim["command"]
        .as_array()
        .expect("the sim command is a list")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(command.first(), Some(&"serve"), "{command:?}");
    let help = Command::new(sim_binary())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for arg in &command[1..] {
        let flag = arg.split('=').next().unwrap();
        assert!(flag.starts_with("--"), "{arg} is not a --flag=value");
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "`vizion-sim serve` has no flag {flag}"
        );
    }
    assert!(
        command.contains(&"--webhook-secret-file=/run/secrets/webhook-secret"),
        "{command:?}"
    );
    let bridge_config = read(COMPOSE_CONFIG);
    assert!(bridge_config.contains("secret_file = \"/run/secrets/webhook-secret\""));
}

// ---------------------------------------------------------------- TLS to RabbitMQ

/// A throw-away certificate authority and a certificate it signed for localhost, made
/// with the `openssl` command.
fn private_ca(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl command is installed");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=vizion-bridge test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
}

/// A TLS listener on a free port of 127.0.0.1, with the certificate in `dir`, in front
/// of the RabbitMQ broker on 127.0.0.1:5672 (`socat`): an `amqps://` broker.
struct TlsProxy {
    child: Child,
    port: u16,
}

impl TlsProxy {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,verify=0,cert={},key={}",
                dir.join("server.crt").display(),
                dir.join("server.key").display()
            ))
            .arg("TCP:127.0.0.1:5672")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the socat command is installed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "socat does not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port }
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the RabbitMQ example of the deployment guide relies on: `SSL_CERT_FILE` naming a
/// private CA's certificate makes the bridge trust an `amqps://` broker that CA signed,
/// and without it the same broker's certificate is refused and the sink stays down.
#[test]
fn rabbitmq_over_tls_trusts_a_private_ca_through_ssl_cert_file() {
    let pki = tempfile::tempdir().unwrap();
    private_ca(pki.path());
    let proxy = TlsProxy::start(pki.path());
    // Nothing declared: the test leaves nothing behind in the broker.
    let sinks = format!(
        r#"sinks = ["rabbitmq"]
[rabbitmq]
url = "amqps://guest:guest@localhost:{}/%2f"
declare_topology = false
"#,
        proxy.port
    );
    let ca = pki.path().join("ca.crt").display().to_string();
    let up = r#"vizion_bridge_sink_up{sink="rabbitmq"} 1"#;

    let trusting = start_bridge_with(&sinks, &[("SSL_CERT_FILE", ca.as_str())]);
    assert!(
        trusting.wait_for_metric_line(up, Duration::from_secs(60)),
        "with SSL_CERT_FILE naming the CA, the RabbitMQ sink never came up:\n{}",
        trusting.log.lock().unwrap().join("\n")
    );

    let untrusting = start_bridge_with(&sinks, &[]);
    let refusal = untrusting
        .wait_for_log("cannot connect to RabbitMQ", Duration::from_secs(60))
        .expect("without the CA, the connection is refused and logged");
    assert!(
        refusal.to_lowercase().contains("certificate") || refusal.contains("UnknownIssuer"),
        "refused for another reason than the certificate: {refusal}"
    );
    assert!(!scrape(untrusting.metrics_port).lines().any(|l| l == up));
}
