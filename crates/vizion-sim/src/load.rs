//! `vizion-sim load`: many concurrent clients, each sending distinct signed updates one
//! after the other, with answer latencies recorded in an HDR histogram. In snapshot
//! mode every update has a reference of its own; in journey mode each client follows
//! references through their journeys, several growing updates per reference.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use time::OffsetDateTime;
use vizion_bridge::auth::signer;

use self::bodies::BodyTemplates;
use crate::journey::Rng;
use crate::load_journeys::{JourneyUpdates, Shape};

// Shared with `examples/broker_ceiling.rs`, which includes the same file.
#[path = "bodies.rs"]
mod bodies;

/// What the updates look like.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every update a reference of its own, its size taken in turn from the milestone range.
    Snapshot,
    /// References followed through their journeys: several updates per reference, the
    /// milestone list growing over the range, estimates moving and becoming actual.
    Journey,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Snapshot => "snapshot",
            Mode::Journey => "journey",
        }
    }
}

#[derive(Args)]
pub struct LoadArgs {
    /// What the updates look like.
    #[arg(long, value_enum, default_value_t = Mode::Snapshot)]
    mode: Mode,
    /// Updates per reference in journey mode, each a full snapshot of the journey so far.
    #[arg(long, default_value_t = 6)]
    updates_per_journey: usize,
    /// Webhook URL of the bridge.
    #[arg(long, default_value = "http://127.0.0.1:8080/webhooks/vizion")]
    url: String,
    /// Environment variable holding the signing secret.
    #[arg(long, default_value = "VIZION_WEBHOOK_SECRET")]
    secret_env: String,
    /// Key id to put in the signature.
    #[arg(long)]
    key_id: Option<String>,
    /// Concurrent clients, each sending one request after the other.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to measure, after the warm-up (`30s`, `2m`).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Warm-up before measuring; its requests are sent but not counted.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Requests per second for all clients together; unlimited when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Fewest milestones in an update (each about 600 bytes).
    #[arg(long, default_value_t = 3)]
    min_milestones: usize,
    /// Most milestones in an update; sizes are spread evenly between the two.
    #[arg(long, default_value_t = 15)]
    max_milestones: usize,
    /// Writes the id of every update answered 2xx to this file, one per line, so a
    /// reader of the broker can check that each arrived.
    #[arg(long)]
    accepted_ids: Option<PathBuf>,
    /// Prints the report as one JSON object.
    #[arg(long)]
    json: bool,
}

/// What one run measured.
#[derive(Serialize)]
struct Report {
    url: String,
    mode: &'static str,
    /// Journey mode only: journeys whose last update was sent in the measured part.
    #[serde(skip_serializing_if = "Option::is_none")]
    journeys_completed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    updates_per_journey: Option<usize>,
    concurrency: usize,
    seconds: f64,
    requests: u64,
    accepted: u64,
    non_2xx: u64,
    transport_errors: u64,
    rate_per_second: f64,
    mean_body_bytes: u64,
    latency_ms: Percentiles,
}

#[derive(Serialize)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    p99_9: f64,
    max: f64,
}

/// One client's tally of the measured part of the run.
struct Tally {
    latencies_us: Histogram<u64>,
    accepted: u64,
    non_2xx: u64,
    transport_errors: u64,
    bytes: u64,
    journeys_completed: u64,
    accepted_ids: Vec<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            // One microsecond to one minute, three significant digits.
            latencies_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            accepted: 0,
            non_2xx: 0,
            transport_errors: 0,
            bytes: 0,
            journeys_completed: 0,
            accepted_ids: Vec::new(),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us
            .add(&other.latencies_us)
            .expect("same bounds");
        self.accepted += other.accepted;
        self.non_2xx += other.non_2xx;
        self.transport_errors += other.transport_errors;
        self.bytes += other.bytes;
        self.journeys_completed += other.journeys_completed;
        self.accepted_ids.extend(other.accepted_ids);
    }
}

pub async fn run(args: LoadArgs) -> Result<(), String> {
    if args.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if args.min_milestones > args.max_milestones {
        return Err("--min-milestones is larger than --max-milestones".into());
    }
    if args.updates_per_journey == 0 {
        return Err("--updates-per-journey must be at least 1".into());
    }
    let secret = std::env::var(&args.secret_env)
        .map_err(|_| format!("set {} to the bridge's webhook secret", args.secret_env))?;
    let url = reqwest::Url::parse(&args.url).map_err(|e| format!("--url: {e}"))?;
    let target = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("HTTP client: {e}"))?;

    let mode = args.mode;
    // Journey mode encodes each update as it plays; only snapshots use the templates.
    let bodies = Arc::new(
        (mode == Mode::Snapshot)
            .then(|| BodyTemplates::new(args.min_milestones, args.max_milestones)),
    );
    let shape = Shape {
        updates: args.updates_per_journey,
        min_milestones: args.min_milestones,
        max_milestones: args.max_milestones,
    };
    let run_tag = run_tag();
    // The references too must differ from every earlier run's: the bridge keeps their state.
    let mut seeds = Rng::new(run_seed());
    let next_id = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + args.warmup;
    let end = measure_from + args.duration;
    // Each client keeps its share of the rate with its own ticker.
    let interval = args
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(args.concurrency as f64 / r));
    let keep_ids = args.accepted_ids.is_some();

    let mut clients = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let mut rng = Rng::new(seeds.next_u64());
        let (client, url, secret, target) = (
            client.clone(),
            args.url.clone(),
            secret.clone(),
            target.clone(),
        );
        let (bodies, next_id, run_tag, key_id) = (
            bodies.clone(),
            next_id.clone(),
            run_tag.clone(),
            args.key_id.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            let mut journey: Option<JourneyUpdates> = None;
            let mut ticker = interval.map(|period| {
                let mut t = tokio::time::interval(period);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                if let Some(ticker) = ticker.as_mut() {
                    ticker.tick().await;
                }
                if Instant::now() >= end {
                    break;
                }
                let n = next_id.fetch_add(1, Ordering::Relaxed);
                let id = format!("load-{run_tag}-{n:010}");
                let mut last_of_journey = false;
                let body = match mode {
                    Mode::Snapshot => bodies
                        .as_ref()
                        .as_ref()
                        .expect("templates in snapshot mode")
                        .render(n, &id),
                    Mode::Journey => {
                        let playing =
                            journey.take().filter(|j| !j.is_done()).unwrap_or_else(|| {
                                JourneyUpdates::new(&mut rng, shape, OffsetDateTime::now_utc())
                            });
                        let playing = journey.insert(playing);
                        let update = playing
                            .next_update(&id, OffsetDateTime::now_utc())
                            .expect("a journey not done has an update left");
                        last_of_journey = playing.is_done();
                        serde_json::to_vec(&update).expect("an update encodes")
                    }
                };
                let now = unix_now();
                let headers = signer::sign(
                    secret.as_bytes(),
                    key_id.as_deref(),
                    &target,
                    now,
                    now + 300,
                    &body,
                );
                let len = body.len() as u64;
                let sent = Instant::now();
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("digest", headers.digest)
                    .header("x-vizion-signature", headers.signature)
                    .body(body)
                    .send()
                    .await;
                let status = match answer {
                    Ok(response) => {
                        let status = response.status();
                        // Read the answer so the connection can be reused.
                        let _ = response.bytes().await;
                        Some(status)
                    }
                    Err(_) => None,
                };
                let elapsed = sent.elapsed();
                if sent < measure_from {
                    continue;
                }
                tally
                    .latencies_us
                    .saturating_record(elapsed.as_micros().max(1) as u64);
                tally.bytes += len;
                if last_of_journey {
                    tally.journeys_completed += 1;
                }
                match status {
                    Some(s) if s.is_success() => {
                        tally.accepted += 1;
                        if keep_ids {
                            tally.accepted_ids.push(id);
                        }
                    }
                    Some(_) => tally.non_2xx += 1,
                    None => tally.transport_errors += 1,
                }
            }
            tally
        }));
    }

    let mut total = Tally::new();
    for client in clients {
        total.merge(client.await.map_err(|e| format!("client task: {e}"))?);
    }
    if let Some(path) = &args.accepted_ids {
        write_ids(path, &total.accepted_ids)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    let report = report(&args, &total);
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("report encodes")
        );
    } else {
        print_human(&report);
    }
    Ok(())
}

fn report(args: &LoadArgs, total: &Tally) -> Report {
    let requests = total.latencies_us.len();
    let seconds = args.duration.as_secs_f64();
    let ms = |q: f64| total.latencies_us.value_at_quantile(q) as f64 / 1000.0;
    let journey = args.mode == Mode::Journey;
    Report {
        url: args.url.clone(),
        mode: args.mode.as_str(),
        journeys_completed: journey.then_some(total.journeys_completed),
        updates_per_journey: journey.then_some(args.updates_per_journey),
        concurrency: args.concurrency,
        seconds,
        requests,
        accepted: total.accepted,
        non_2xx: total.non_2xx,
        transport_errors: total.transport_errors,
        rate_per_second: total.accepted as f64 / seconds,
        mean_body_bytes: total.bytes / requests.max(1),
        latency_ms: Percentiles {
            p50: ms(0.50),
            p90: ms(0.90),
            p99: ms(0.99),
            p99_9: ms(0.999),
            max: total.latencies_us.max() as f64 / 1000.0,
        },
    }
}

fn print_human(r: &Report) {
    println!(
        "{} requests in {:.0}s from {} clients: {} accepted ({:.0}/s), {} non-2xx, {} transport errors, mean body {} B",
        r.requests,
        r.seconds,
        r.concurrency,
        r.accepted,
        r.rate_per_second,
        r.non_2xx,
        r.transport_errors,
        r.mean_body_bytes
    );
    if let (Some(journeys), Some(updates)) = (r.journeys_completed, r.updates_per_journey) {
        println!(
            "mode {}: {journeys} journeys completed, {updates} updates per journey",
            r.mode
        );
    } else {
        println!("mode {}", r.mode);
    }
    let l = &r.latency_ms;
    println!(
        "answer latency: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        l.p50, l.p90, l.p99, l.p99_9, l.max
    );
}

fn write_ids(path: &PathBuf, ids: &[String]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for id in ids {
        writeln!(out, "{id}")?;
    }
    out.flush()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Seeds the references of journey mode, different on every run.
fn run_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    (nanos as u64) ^ (u64::from(std::process::id()) << 32)
}

/// A tag that keeps this run's update ids apart from every earlier run's, since the
/// bridge remembers ids it has seen.
fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}
