//! The example consumers in examples/, run as a downstream team would run them against
//! what two bridges published to the real brokers: every event handled once, the
//! duplicate on the wire skipped and counted, each container's updates in publish order.
//!
//! The binaries are the ones `cargo build --examples` leaves next to the test binary's
//! directory (scripts/test.sh builds them first: `cargo test --all-targets` builds
//! examples only as test harnesses).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{
    bootstrap, spawn_app_with, update_body_for, use_kafka, Child, Names, Reader, TestApp,
};

const CONTAINER_A: (&str, &str) = ("0b6a4f3e-8d52-4c11-9a0f-2f4b8c1d7e01", "MSCU1111111");
const CONTAINER_B: (&str, &str) = ("5c2e9d7a-1f34-4b8e-8c6d-9e0a3b2f4d02", "MAEU2222222");
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// One run of an example binary, its stdout read line by line as it comes.
struct ExampleRun {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl ExampleRun {
    fn start(name: &str, args: &[&str]) -> Self {
        // target/<profile>/deps/api-<hash> → target/<profile>/examples/<name>
        let test_binary = std::env::current_exe().unwrap();
        let path: PathBuf = test_binary
            .parent()
            .and_then(|deps| deps.parent())
            .unwrap()
            .join("examples")
            .join(name);
        assert!(
            path.is_file(),
            "{} is missing: build the examples first (`cargo build --examples`, as \
             scripts/test.sh does)",
            path.display()
        );
        let mut child = Command::new(&path)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child: Child(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (without blocking the runtime the bridge runs on) for a line starting
    /// with `prefix`.
    async fn wait_for_line(&mut self, prefix: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.lines.try_recv() {
                Ok(line) => {
                    let found = line.starts_with(prefix);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(TryRecvError::Disconnected) => {
                    panic!("exited before printing {prefix:?}: {:?}", self.seen)
                }
                Err(TryRecvError::Empty) => {
                    assert!(
                        Instant::now() < deadline,
                        "no {prefix:?} line: {:?}",
                        self.seen
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Waits for the process to exit successfully; its whole output.
    async fn output(mut self, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            match self.lines.try_recv() {
                Ok(line) => self.seen.push(line),
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    assert!(
                        Instant::now() < deadline,
                        "still running after {within:?}: {:?}",
                        self.seen
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        let status = self.child.0.wait().unwrap();
        assert!(status.success(), "{status}: {:?}", self.seen);
        self.seen
    }
}

/// Posts updates of two containers, interleaved, with the first one resent: once to
/// the same bridge (which answers that it is a duplicate) and once to a second bridge
/// without shared deduplication, which publishes it again. Returns each container's
/// update ids in publish order.
async fn post_updates(first: &TestApp, second: &TestApp) -> (Vec<String>, Vec<String>) {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let id = |name: &str| format!("{name}-{suffix}");
    let (a, b) = ([id("a1"), id("a2"), id("a3")], [id("b1"), id("b2")]);
    let body =
        |id: &str, (reference, container): (&str, &str)| update_body_for(id, reference, container);
    let accepted = |answer: Value, id: &str| {
        assert_eq!(answer, serde_json::json!({"status": "accepted", "id": id}))
    };
    for (id, container) in [
        (&a[0], CONTAINER_A),
        (&b[0], CONTAINER_B),
        (&a[1], CONTAINER_A),
    ] {
        let response = first.post_signed(&body(id, container)).await;
        accepted(response.json().await.unwrap(), id);
    }
    let resent = first.post_signed(&body(&a[0], CONTAINER_A)).await;
    assert_eq!(
        resent.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "duplicate", "id": a[0]}),
        "one bridge publishes a resent update once"
    );
    let elsewhere = second.post_signed(&body(&a[0], CONTAINER_A)).await;
    accepted(elsewhere.json().await.unwrap(), &a[0]);
    for (id, container) in [(&b[1], CONTAINER_B), (&a[2], CONTAINER_A)] {
        let response = first.post_signed(&body(id, container)).await;
        accepted(response.json().await.unwrap(), id);
    }
    (a.to_vec(), b.to_vec())
}

/// What a consumer printed: the ids handled per container in order, the duplicate
/// ids skipped, and its summary line.
struct Printed {
    handled: Vec<(String, String)>,
    duplicates: Vec<String>,
    summary: String,
}

impl Printed {
    fn parse(lines: &[String]) -> Self {
        let field = |line: &str, name: &str| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(&format!("{name}=")).map(str::to_owned))
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        };
        let handled = lines
            .iter()
            .filter(|l| l.starts_with("handled "))
            .map(|l| (field(l, "subject"), field(l, "id")))
            .collect();
        let duplicates = lines
            .iter()
            .filter(|l| l.starts_with("duplicate "))
            .map(|l| field(l, "id"))
            .collect();
        let summary = lines
            .iter()
            .find(|l| l.starts_with("summary "))
            .unwrap_or_else(|| panic!("no summary line: {lines:?}"))
            .clone();
        Self {
            handled,
            duplicates,
            summary,
        }
    }

    fn ids_of(&self, container: &str) -> Vec<String> {
        self.handled
            .iter()
            .filter(|(subject, _)| subject == container)
            .map(|(_, id)| id.clone())
            .collect()
    }

    fn assert_each_once_in_order(&self, a: &[String], b: &[String]) {
        let mut all: Vec<&String> = self.handled.iter().map(|(_, id)| id).collect();
        all.sort();
        let mut expected: Vec<&String> = a.iter().chain(b).collect();
        expected.sort();
        assert_eq!(all, expected, "every event handled exactly once");
        assert_eq!(self.duplicates, vec![a[0].clone()], "the resend is skipped");
        assert_eq!(self.summary, "summary handled=5 duplicates_skipped=1");
        assert_eq!(
            self.ids_of(CONTAINER_A.1),
            a,
            "container A in publish order"
        );
        assert_eq!(
            self.ids_of(CONTAINER_B.1),
            b,
            "container B in publish order"
        );
    }
}

#[tokio::test]
async fn the_kafka_example_handles_each_event_once_in_container_order() {
    let brokers = bootstrap();
    let mut topics = None;
    let first = spawn_app_with(|s| topics = Some(use_kafka(s, &brokers))).await;
    let topics = topics.unwrap();
    let second = spawn_app_with(|s| topics.configure(s, &brokers)).await;
    first.wait_until_ready(Duration::from_secs(20)).await;
    second.wait_until_ready(Duration::from_secs(20)).await;

    let (a, b) = post_updates(&first, &second).await;

    let group = format!("example-{}", uuid::Uuid::new_v4().simple());
    let topic_list = format!("{},{}", topics.updates, topics.milestones);
    let run = ExampleRun::start(
        "kafka_consumer",
        &[
            "--bootstrap",
            &brokers,
            "--topics",
            &topic_list,
            "--group",
            &group,
            "--max-events",
            "5",
            "--idle-timeout",
            "30",
        ],
    );
    let printed = Printed::parse(&run.output(EXIT_WITHIN).await);
    printed.assert_each_once_in_order(&a, &b);
}

#[tokio::test]
async fn the_rabbitmq_example_handles_each_event_once_in_container_order() {
    let names = Names::new("example-consumer");
    let first = spawn_app_with(|s| names.configure(s)).await;
    let second = spawn_app_with(|s| names.configure(s)).await;
    first.wait_until_ready(Duration::from_secs(10)).await;
    second.wait_until_ready(Duration::from_secs(10)).await;

    // The consumer declares and binds its queue itself; what is published before that
    // goes unrouted, so the updates are posted once it says it is ready.
    let queue = format!("{}.example", names.exchange);
    let mut run = ExampleRun::start(
        "rabbitmq_consumer",
        &[
            "--exchange",
            &names.exchange,
            "--queue",
            &queue,
            "--binding",
            "update.*",
            "--binding",
            "milestone.#",
            "--max-events",
            "5",
            "--idle-timeout",
            "30",
        ],
    );
    run.wait_for_line("ready ", Duration::from_secs(20)).await;

    let (a, b) = post_updates(&first, &second).await;

    let printed = Printed::parse(&run.output(EXIT_WITHIN).await);
    let reader = Reader::connect().await;
    reader.delete_queue(&queue).await;
    reader.delete(&names).await;
    printed.assert_each_once_in_order(&a, &b);
}
