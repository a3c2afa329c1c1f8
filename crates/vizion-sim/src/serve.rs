//! `vizion-sim serve`: command-line options and start-up of the simulated Vizion.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::{web, App, HttpServer};
use secrecy::SecretString;

use crate::api::{self, AppState, Faults, RateLimit};
use crate::callbacks::{self, Deliverer, Signing};
use crate::journey::{Rng, CARRIERS};
use crate::store::{Schedule, Store};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. The first line on standard
    /// output is `listening on http://ADDRESS`.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,

    /// The API key clients must send in `X-API-Key`.
    #[arg(long, env = "VIZION_SIM_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Name of an environment variable holding the API key (instead of --api-key).
    #[arg(long, conflicts_with = "api_key")]
    pub api_key_env: Option<String>,

    /// Name of an environment variable holding the secret that signs deliveries.
    /// Without it, deliveries go out unsigned.
    #[arg(long)]
    pub webhook_secret_env: Option<String>,

    /// A file holding the secret that signs deliveries (a mounted secret); trailing
    /// whitespace is ignored.
    #[arg(long, conflicts_with = "webhook_secret_env")]
    pub webhook_secret_file: Option<std::path::PathBuf>,

    /// `keyId` written in the `x-vizion-signature` header.
    #[arg(long)]
    pub key_id: Option<String>,

    /// Lifetime of a signature (`expires` - `created`).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub signature_ttl: Duration,

    /// Time until a failed delivery is sent again (Vizion checks every 12 hours).
    #[arg(long, default_value = "12h", value_parser = humantime::parse_duration)]
    pub check_interval: Duration,

    /// Time between two steps of a journey; `0s` plays steps only on
    /// `POST /_sim/references/{id}/advance`.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub step_interval: Duration,

    /// Seed of every random choice (journeys, ids, injected failures); the clock by default.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Deactivate a reference (`auto_unsubscribed`) once its empty return is delivered.
    #[arg(long)]
    pub auto_unsubscribe: bool,

    /// Answer `404` to a `DELETE` of a reference already unsubscribed (inactive), as an
    /// API that forgets unsubscribed references does.
    #[arg(long)]
    pub forget_unsubscribed: bool,

    /// Timeout of one delivery.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,

    /// At most this many API requests per --rate-window; more get 429 with Retry-After.
    #[arg(long)]
    pub rate_limit: Option<u32>,

    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub rate_window: Duration,

    /// Fraction (0 to 1) of API requests answered with --fail-status.
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,

    #[arg(long, default_value_t = 503)]
    pub fail_status: u16,

    /// Create this many container references at start (needs --callback-url).
    #[arg(long, default_value_t = 0, requires = "callback_url")]
    pub references: usize,

    /// Callback URL of the references created by --references.
    #[arg(long)]
    pub callback_url: Option<String>,

    /// Create the references in this JSON file at start: an array of
    /// `POST /references` bodies.
    #[arg(long)]
    pub preload: Option<PathBuf>,
}

fn read_env(name: &str, what: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(value),
        _ => Err(format!(
            "{what}: the environment variable {name} is not set"
        )),
    }
}

/// Serves until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    init_logging();
    serve(args).await
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let api_key = match (&args.api_key, &args.api_key_env) {
        (Some(key), _) => key.clone(),
        (None, Some(name)) => read_env(name, "--api-key-env")?,
        (None, None) => return Err("an API key is required: --api-key or --api-key-env".into()),
    };
    let secret = match (&args.webhook_secret_env, &args.webhook_secret_file) {
        (Some(name), _) => Some(read_env(name, "--webhook-secret-env")?),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map(|s| s.trim_end().to_owned())
                .map_err(|e| format!("--webhook-secret-file {}: {e}", path.display()))?,
        ),
        (None, None) => None,
    };
    if secret.as_deref().is_some_and(str::is_empty) {
        return Err("the webhook secret is empty".into());
    }
    if secret.is_none() {
        tracing::warn!(
            "no --webhook-secret-env or --webhook-secret-file: deliveries are not signed"
        );
    }
    if !(0.0..=1.0).contains(&args.fail_rate) {
        return Err("--fail-rate must be between 0 and 1".into());
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default()
    });
    let step_interval = (!args.step_interval.is_zero()).then_some(args.step_interval);
    if args.check_interval.is_zero() {
        return Err("--check-interval must be more than 0".into());
    }

    let store = Arc::new(Store::new(
        seed,
        Schedule {
            step_interval,
            check_interval: args.check_interval,
            auto_unsubscribe: args.auto_unsubscribe,
        },
    ));
    let deliverer = Arc::new(Deliverer::new(
        Signing {
            secret: secret.map(SecretString::from),
            key_id: args.key_id.clone(),
            ttl: args.signature_ttl,
        },
        args.delivery_timeout,
    ));
    preload(&store, &args)?;

    let state = web::Data::new(AppState {
        store: store.clone(),
        deliverer: deliverer.clone(),
        api_key: SecretString::from(api_key),
        rate_limit: args
            .rate_limit
            .map(|requests| RateLimit::new(requests, args.rate_window)),
        forget_unsubscribed: args.forget_unsubscribed,
        faults: Mutex::new(Faults {
            fail_rate: args.fail_rate,
            fail_next: 0,
            lose_answer_next: 0,
            status: args.fail_status,
            rng: Rng::new(seed ^ 0x5eed),
        }),
    });
    let listener = TcpListener::bind(args.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let server =
        HttpServer::new(move || App::new().app_data(state.clone()).configure(api::configure))
            .workers(2)
            .listen(listener)
            .map_err(|e| e.to_string())?
            .run();

    // The first line on standard output: tests and scripts read the port from it.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "listening on http://{address}");
    let _ = stdout.flush();
    tracing::info!(
        %address,
        seed,
        step_interval = ?step_interval,
        check_interval = ?args.check_interval,
        signed = args.webhook_secret_env.is_some(),
        "vizion-sim listening"
    );

    let shortest = step_interval
        .unwrap_or(args.check_interval)
        .min(args.check_interval);
    let tick = (shortest / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let clock = tokio::spawn(callbacks::run_clock(store, deliverer, tick));
    let handle = server.handle();
    let mut serving = tokio::spawn(server);
    let result = tokio::select! {
        result = &mut serving => result,
        () = shutdown_signal() => {
            tracing::info!("stopping");
            handle.stop(true).await;
            serving.await
        }
    };
    clock.abort();
    result
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// References created at start: `--references N` and `--preload FILE`.
fn preload(store: &Store, args: &ServeArgs) -> Result<(), String> {
    if let Some(path) = &args.preload {
        let text =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let bodies: Vec<serde_json::Value> = serde_json::from_slice(&text).map_err(|e| {
            format!(
                "{}: not a JSON array of reference requests: {e}",
                path.display()
            )
        })?;
        for (i, body) in bodies.iter().enumerate() {
            let body = serde_json::to_vec(body).expect("JSON serializes");
            let reference = api::create_from_json(store, &body)
                .map_err(|e| format!("{} entry {i}: {e}", path.display()))?;
            tracing::info!(reference_id = %reference.id, "preloaded reference");
        }
    }
    if let Some(callback_url) = &args.callback_url {
        for i in 0..args.references {
            let carrier = &CARRIERS[i % CARRIERS.len()];
            let body = serde_json::json!({
                "container_id": store.new_container_number(carrier),
                "carrier_code": carrier.scac,
                "callback_url": callback_url,
            });
            let reference = api::create_from_json(store, &serde_json::to_vec(&body).expect("JSON"))
                .map_err(|e| format!("--references: {e}"))?;
            tracing::info!(reference_id = %reference.id, container_id = ?reference.container_id, "created reference");
        }
    }
    Ok(())
}
