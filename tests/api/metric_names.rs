//! `/metrics` follows the naming rules of docs/METRICS.md, and exports exactly the
//! metrics its table lists: a metric added, renamed or removed without the page saying
//! so fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::helpers::*;

const PREFIX: &str = "vizion_bridge_";

/// Words of a unit other than the base one, which a name must not use.
const NOT_BASE_UNITS: [&str; 12] = [
    "ms",
    "millis",
    "milliseconds",
    "us",
    "microseconds",
    "minutes",
    "hours",
    "days",
    "kb",
    "kilobytes",
    "mb",
    "megabytes",
];

/// One family of the exposition: its `# TYPE`, and the label names its samples carry.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    /// Every label value seen, to check that each is a bounded code.
    values: BTreeSet<String>,
}

/// The families of a text exposition (the bridge's registry holds only its own).
fn families(exposition: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            families.entry(name.to_owned()).or_default().kind = kind.to_owned();
        }
    }
    for line in exposition.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let sample = &line[..name_end];
        let (family, histogram_part) = match families.get(sample) {
            Some(_) => (sample.to_owned(), false),
            None => {
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| sample.strip_suffix(suffix))
                    .filter(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
                    .unwrap_or_else(|| panic!("the sample {sample} has no # TYPE line"));
                (base.to_owned(), true)
            }
        };
        let family = families.get_mut(&family).unwrap();
        for (label, value) in labels_of(&line[name_end..]) {
            // A histogram's buckets carry `le`, which Prometheus defines.
            if histogram_part && label == "le" {
                continue;
            }
            family.labels.insert(label);
            family.values.insert(value);
        }
    }
    families
}

/// The labels of a sample line after its name: `{a="x",b="y"} 1` → (a, x), (b, y).
fn labels_of(rest: &str) -> Vec<(String, String)> {
    let Some(inner) = rest.strip_prefix('{') else {
        return Vec::new();
    };
    let mut labels = Vec::new();
    let mut chars = inner.chars();
    loop {
        let name: String = chars.by_ref().take_while(|&c| c != '=').collect();
        let name = name.trim_start_matches(',').trim().to_owned();
        if name.is_empty() || name.starts_with('}') {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "a quoted value for {name}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().unwrap()),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((name, value));
    }
    labels
}

/// What is wrong with a family by the rules of docs/METRICS.md.
fn rule_violations(name: &str, family: &Family, allowed_labels: &BTreeSet<String>) -> Vec<String> {
    let mut wrong = Vec::new();
    if !name.starts_with(PREFIX) {
        wrong.push(format!("{name}: does not start with {PREFIX}"));
    }
    let snake = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.contains("__")
        && !name.ends_with('_');
    if !snake {
        wrong.push(format!("{name}: not snake_case"));
    }
    let counter = family.kind == "counter";
    if counter != name.ends_with("_total") {
        wrong.push(format!(
            "{name}: a {} {} end in _total",
            family.kind,
            if counter { "must" } else { "must not" }
        ));
    }
    if !["counter", "gauge", "histogram"].contains(&family.kind.as_str()) {
        wrong.push(format!("{name}: type {} is not used", family.kind));
    }
    if family.kind == "histogram" && !name.ends_with("_seconds") {
        wrong.push(format!("{name}: a histogram measures seconds"));
    }
    let words: Vec<&str> = name.trim_end_matches("_total").split('_').collect();
    for unit in NOT_BASE_UNITS {
        if words.contains(&unit) {
            wrong.push(format!("{name}: `{unit}` is not a base unit"));
        }
    }
    for unit in ["seconds", "bytes"] {
        if words.contains(&unit) && words.last() != Some(&unit) {
            wrong.push(format!("{name}: the unit `{unit}` comes last"));
        }
    }
    for time in ["duration", "age", "latency", "time"] {
        if words.contains(&time) && words.last() != Some(&"seconds") {
            wrong.push(format!("{name}: a {time} is in _seconds"));
        }
    }
    for label in &family.labels {
        if !allowed_labels.contains(label) {
            wrong.push(format!("{name}: the label `{label}` is not an allowed one"));
        }
    }
    for value in &family.values {
        let code = !value.is_empty()
            && value.len() <= 40
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.".contains(&b))
            && value.parse::<IpAddr>().is_err();
        if !code {
            wrong.push(format!(
                "{name}: the label value {value:?} is not a bounded code"
            ));
        }
    }
    wrong
}

/// The rows of the table under `heading` in docs/METRICS.md, as their cells.
fn table_under(doc: &str, heading: &str) -> Vec<Vec<String>> {
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with(heading))
        .unwrap_or_else(|| panic!("docs/METRICS.md has a section {heading}"));
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            line.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The names in backquotes of a table cell.
fn quoted(cell: &str) -> BTreeSet<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

struct Documented {
    labels: BTreeSet<String>,
    /// Name → (type, label names).
    metrics: BTreeMap<String, (String, BTreeSet<String>)>,
}

fn documented() -> Documented {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/METRICS.md");
    let doc = std::fs::read_to_string(&path).expect("docs/METRICS.md");
    let labels: BTreeSet<String> = table_under(&doc, "Labels")
        .iter()
        .map(|row| quoted(&row[0]).into_iter().next().unwrap())
        .collect();
    let mut metrics = BTreeMap::new();
    for row in table_under(&doc, "Every metric") {
        assert_eq!(row.len(), 5, "name, type, unit, labels, meaning: {row:?}");
        let name = quoted(&row[0]).into_iter().next().unwrap();
        let previous = metrics.insert(name.clone(), (row[1].clone(), quoted(&row[3])));
        assert!(previous.is_none(), "{name} is listed twice");
    }
    assert!(
        labels.len() > 5 && metrics.len() > 20,
        "the tables are read"
    );
    Documented { labels, metrics }
}

#[tokio::test]
async fn every_exported_metric_follows_the_rules_and_is_documented() {
    let app = spawn_app().await;
    let accepted = app.post_signed(&update_body("u-names")).await;
    assert_eq!(accepted.status().as_u16(), 200);
    let refused = app.post(&update_body("u-unsigned"), &[]).await;
    assert_eq!(refused.status().as_u16(), 401);
    let exposition = app
        .client
        .get(format!("{}/metrics", app.metrics_address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let exported = families(&exposition);
    assert!(
        exported["vizion_bridge_webhooks_total"]
            .labels
            .contains("outcome"),
        "the traffic made series: {exposition}"
    );
    let docs = documented();

    let mut wrong: Vec<String> = exported
        .iter()
        .flat_map(|(name, family)| rule_violations(name, family, &docs.labels))
        .collect();
    for (name, family) in &exported {
        match docs.metrics.get(name) {
            None => wrong.push(format!("{name}: exported but not in docs/METRICS.md")),
            Some((kind, labels)) => {
                if *kind != family.kind {
                    wrong.push(format!("{name}: a {} documented as a {kind}", family.kind));
                }
                if !family.labels.is_subset(labels) {
                    wrong.push(format!(
                        "{name}: labels {:?}, documented {labels:?}",
                        family.labels
                    ));
                }
            }
        }
    }
    for (name, (_, labels)) in &docs.metrics {
        if !exported.contains_key(name) {
            wrong.push(format!("{name}: in docs/METRICS.md but not exported"));
        }
        for label in labels.difference(&docs.labels) {
            wrong.push(format!(
                "{name}: documented with the unlisted label `{label}`"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} problem(s) with /metrics and docs/METRICS.md:\n  {}",
        wrong.len(),
        wrong.join("\n  ")
    );
}

#[test]
fn the_rules_catch_what_they_forbid() {
    let exposition = "\
# TYPE vizion_bridge_requests counter
vizion_bridge_requests{outcome=\"ok\"} 1
# TYPE vizion_bridge_queue_total gauge
vizion_bridge_queue_total 1
# TYPE vizion_bridge_write_latency_ms histogram
vizion_bridge_write_latency_ms_bucket{sink=\"file\",le=\"0.5\"} 1
vizion_bridge_write_latency_ms_sum{sink=\"file\"} 0.1
vizion_bridge_write_latency_ms_count{sink=\"file\"} 1
# TYPE vizion_bridge_bytes_spooled gauge
vizion_bridge_bytes_spooled{client=\"10.0.0.1\"} 1
# TYPE vizion_bridge_updates_total counter
vizion_bridge_updates_total{update_id=\"U-1\"} 1
# TYPE vizion_bridge_good_total counter
vizion_bridge_good_total{outcome=\"accepted\"} 1
";
    let allowed: BTreeSet<String> = ["outcome", "sink"].map(str::to_owned).into();
    let exported = families(exposition);
    let wrong = |name: &str| rule_violations(name, &exported[name], &allowed);
    assert_eq!(
        wrong("vizion_bridge_requests").len(),
        1,
        "a counter without _total"
    );
    assert_eq!(
        wrong("vizion_bridge_queue_total").len(),
        1,
        "a gauge in _total"
    );
    assert!(wrong("vizion_bridge_write_latency_ms")
        .iter()
        .any(|w| w.contains("not a base unit")));
    assert!(wrong("vizion_bridge_bytes_spooled")
        .iter()
        .any(|w| w.contains("comes last")));
    assert!(wrong("vizion_bridge_bytes_spooled")
        .iter()
        .any(|w| w.contains("`client`")));
    assert!(wrong("vizion_bridge_bytes_spooled")
        .iter()
        .any(|w| w.contains("bounded code")));
    assert!(wrong("vizion_bridge_updates_total")
        .iter()
        .any(|w| w.contains("bounded code")));
    assert!(wrong("vizion_bridge_good_total").is_empty());
}
