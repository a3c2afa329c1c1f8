//! Builds the running service from settings, so that `main` and the tests start it the
//! same way (tests on port 0).

mod reload;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_http::HttpService;
use actix_service::{apply_fn_factory, map_config};
use actix_web::dev::{AppConfig, Server, Service};
use actix_web::{web, App, HttpServer};
use arc_swap::ArcSwap;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::KeyRing;
use crate::config::{BuildContext, ConfigError};
use crate::delivery::{DedupError, Delivery, SpoolError};
use crate::events::MilestoneMode;
use crate::ingest::connection::{self, Connections};
use crate::ingest::{routes, BodyReads, IngestState, LiveConfig, ShutdownState, ANSWER_MARGIN};
use crate::lifecycle::{AutoUnsubscribe, UnsubscribedSet};
use crate::pipeline::{Pipeline, Publishing};
use crate::poller::Poller;
use crate::settings::Settings;
use crate::sinks::{self, Sink, SinkError};
use crate::store::state::{StateError, StateStore};
use crate::telemetry::Metrics;
use crate::vizion::api::{ApiError, VizionApi};

/// The drain ends early once no connection has arrived for this long (and nothing is
/// in flight): closing the listener then cuts nobody's request.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// How long a connection answered before its body was read stays open to take the
/// rest, so that the answer is not lost to a reset.
const CLIENT_DISCONNECT_LINGER: Duration = Duration::from_secs(1);

/// What a cancelled background task gets for its last step, should the grace be spent.
const LAST_STEP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open sink: {0}")]
    Sink(#[from] SinkError),
    #[error("cannot open the spool: {0}")]
    Spool(#[from] SpoolError),
    #[error("server failed: {0}")]
    Server(#[from] std::io::Error),
    #[error("cannot open the dedup store: {0}")]
    Dedup(#[from] DedupError),
    #[error("cannot set up the Vizion API client: {0}")]
    VizionApi(#[from] ApiError),
    #[error("cannot open the unsubscription record: {0}")]
    UnsubscribedSet(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// A built service, listening but not yet serving.
pub struct Application {
    port: u16,
    metrics_port: u16,
    server: Server,
    metrics_server: Server,
    state: web::Data<IngestState>,
    connections: Arc<Connections>,
    /// Cancelled to begin the shutdown: a child of the application's root token, so
    /// that cancelling the root stops serving as well.
    stop: CancellationToken,
    shutdown_delay: Duration,
    shutdown_timeout: Duration,
    answer_window: Duration,
    poller: Option<Poller>,
    reloader: Option<reload::Reloader>,
    wiring: Wiring,
}

/// Asks a running [`Application`] to shut down as on SIGTERM.
#[derive(Clone)]
pub struct StopHandle(CancellationToken);

impl StopHandle {
    pub fn stop(&self) {
        self.0.cancel();
    }
}

impl Application {
    /// Builds the service with the sinks named in `settings`.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let cx = settings.build_context(Metrics::new());
        let sinks = sinks::build(&settings.sinks, settings.sink_configs(), &cx)?;
        Self::assemble(settings, sinks, cx, None).await
    }

    /// [`build`](Self::build) for `serve`: the service also reloads its configuration
    /// from `config` (or the file `VIZION_BRIDGE_CONFIG` names) on SIGHUP and, with
    /// `reload.watch`, when that file or a secret file it names changes.
    pub async fn build_reloadable(
        settings: Settings,
        config: Option<PathBuf>,
    ) -> Result<Self, StartupError> {
        let cx = settings.build_context(Metrics::new());
        let sinks = sinks::build(&settings.sinks, settings.sink_configs(), &cx)?;
        Self::assemble(settings, sinks, cx, Some(config)).await
    }

    /// Builds the service with the given sinks in place of the configured ones (tests
    /// use this to bring sinks of their own).
    pub async fn build_with_sinks(
        settings: Settings,
        sinks: Vec<Arc<dyn Sink>>,
    ) -> Result<Self, StartupError> {
        let cx = settings.build_context(Metrics::new());
        Self::assemble(settings, sinks, cx, None).await
    }

    /// `reload_from` is `Some` when the configuration reloads, with the file given to
    /// `serve`, if any.
    async fn assemble(
        settings: Settings,
        sinks: Vec<Arc<dyn Sink>>,
        cx: BuildContext,
        reload_from: Option<Option<PathBuf>>,
    ) -> Result<Self, StartupError> {
        for warning in settings.validate()? {
            tracing::warn!("{}", warning.0);
        }
        let keys = KeyRing::from_config(&settings.auth.secrets)
            .map_err(|e| ConfigError::Invalid(vec![format!("`auth.secrets`: {e}")]))?;
        let server_config = &settings.server;
        let metrics = cx.metrics.clone();
        let wiring = Wiring::build(&settings, sinks, &cx, SpoolUse::Serve)?;
        let delivery = wiring.pipeline.delivery().clone();
        let pipeline = wiring.pipeline.clone();
        let poller = if settings.poll.enabled {
            Some(wiring.poller(&settings)?)
        } else {
            None
        };
        let state = web::Data::new(IngestState {
            live: ArcSwap::from_pointee(LiveConfig::new(
                &settings.ingest,
                settings.auth.clone(),
                keys,
            )),
            delivery,
            pipeline,
            metrics: metrics.clone(),
            max_body_bytes: settings.ingest.max_body_bytes,
            body_read_timeout: server_config.body_read_timeout,
            retry_after: server_config.retry_after,
            body_reads: BodyReads::new(
                server_config.max_body_reads,
                server_config.max_body_reads_per_client,
                metrics.bodies_being_read_gauge(),
            ),
            inflight: Arc::new(Semaphore::new(server_config.max_inflight)),
            shutdown: ShutdownState::default(),
        });

        let listener = bind(server_config.listen)?;
        let port = listener.local_addr()?.port();
        let connections = Connections::new(metrics.clone());
        let server = serve_webhooks(listener, &settings, state.clone(), connections.clone())?;

        let metrics_listener = bind(settings.metrics.listen)?;
        let metrics_port = metrics_listener.local_addr()?.port();
        let metrics_data = web::Data::new(metrics);
        let metrics_server = HttpServer::new(move || {
            App::new()
                .app_data(metrics_data.clone())
                .route("/metrics", web::get().to(routes::metrics))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(metrics_listener)?
        .run();

        let reloader = match reload_from {
            Some(config) => Some(reload::Reloader::new(
                config,
                &settings,
                state.clone(),
                cx.metrics.clone(),
            )?),
            None => None,
        };
        tracing::info!(
            listen = %server_config.listen,
            port,
            metrics_port,
            path = %settings.ingest.path,
            auth_scheme = settings.auth.scheme.as_str(),
            auth_mode = settings.auth.mode.as_str(),
            "vizion-bridge listening"
        );
        Ok(Self {
            port,
            metrics_port,
            server,
            metrics_server,
            state,
            connections,
            stop: cx.shutdown.child_token(),
            shutdown_delay: server_config.shutdown_delay,
            shutdown_timeout: server_config.shutdown_timeout,
            answer_window: server_config.answer_window(),
            poller,
            reloader,
            wiring,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Serves until SIGTERM, SIGINT or [`StopHandle::stop`], then stops taking
    /// requests, lets in-flight ones finish, and flushes the sinks.
    pub async fn run_until_stopped(mut self) -> Result<(), StartupError> {
        let ingest = self.server.handle();
        let metrics = self.metrics_server.handle();
        let mut serving = tokio::spawn(self.server);
        let metrics_serving = tokio::spawn(self.metrics_server);
        if let Some(poller) = self.poller.take() {
            self.wiring.start_polling(poller);
        }
        if let Some(reloader) = self.reloader.take() {
            // SIGHUP only reloads: the shutdown below waits for SIGTERM and SIGINT alone.
            let cx = &self.wiring.cx;
            cx.spawn(reloader.run(cx.shutdown.child_token()));
        }

        let early_exit = tokio::select! {
            _ = shutdown_signal() => None,
            _ = self.stop.cancelled() => None,
            result = &mut serving => Some(result),
        };
        self.state.shutdown.stop_being_ready();
        // One deadline for draining the webhooks and then stopping everything else:
        // `server.shutdown_timeout` is spent once, whatever step takes it.
        let mut deadline = Instant::now() + self.shutdown_timeout;
        let result = match early_exit {
            Some(result) => result.map_err(std::io::Error::other).and_then(|r| r),
            None => {
                if !self.shutdown_delay.is_zero() {
                    tracing::info!(delay = ?self.shutdown_delay, "shutting down: not ready, still taking webhooks");
                    tokio::time::sleep(self.shutdown_delay).await;
                }
                deadline = Instant::now() + self.shutdown_timeout;
                drain(
                    &self.state,
                    &self.connections,
                    self.shutdown_timeout,
                    self.answer_window,
                )
                .await;
                // What is left is writing the last answers and closing idle connections.
                ingest.stop(true).await;
                serving.await.map_err(std::io::Error::other).and_then(|r| r)
            }
        };
        self.wiring.close_by(deadline).await;
        metrics.stop(true).await;
        let _ = metrics_serving.await;
        tracing::info!("stopped");
        result.map_err(StartupError::from)
    }
}

/// Refuses new webhooks (503), has those in flight answered within `answer_window`,
/// and returns once nothing is in flight and no connection is arriving, or when
/// `shutdown_timeout` has passed. The listener stays open all along, so that no
/// connection is reset meanwhile.
async fn drain(
    state: &IngestState,
    connections: &Connections,
    shutdown_timeout: Duration,
    answer_window: Duration,
) {
    let started = tokio::time::Instant::now();
    state.shutdown.drain(started + answer_window);
    tracing::info!(
        timeout = ?shutdown_timeout,
        "shutting down: refusing new webhooks, finishing those in flight"
    );
    loop {
        let in_flight = state.metrics.requests_in_flight();
        if in_flight == 0 && connections.are_quiet(DRAIN_QUIET) {
            return;
        }
        if started.elapsed() >= shutdown_timeout {
            tracing::warn!(
                in_flight,
                "shutting down: requests still open at the timeout"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The webhook listener: actix-web's HTTP/1 service on each connection, served through
/// [`Connections`], which counts and logs what the HTTP layer refuses on its own.
fn serve_webhooks(
    listener: TcpListener,
    settings: &Settings,
    state: web::Data<IngestState>,
    connections: Arc<Connections>,
) -> std::io::Result<Server> {
    let server_config = settings.server.clone();
    let webhook_path = settings.ingest.path.clone();
    let mut builder = actix_server::Server::build()
        // Connections are drained first (`Application::drain`); this is the time left
        // for writing the last answers.
        .shutdown_timeout(ANSWER_MARGIN.as_secs())
        // Signals are handled by `run_until_stopped`, so that sinks are flushed after
        // the last request.
        .disable_signals();
    if server_config.workers > 0 {
        builder = builder.workers(server_config.workers);
    }
    let closing = builder.graceful_shutdown_signal();
    let local_addr = listener.local_addr()?;
    let server = builder.listen("vizion-bridge-webhooks", listener, move || {
        let app = App::new()
            .app_data(state.clone())
            .wrap_fn(|request, service| {
                connection::note_request(&request);
                service.call(request)
            })
            .route(&webhook_path, web::post().to(routes::receive_webhook))
            .route("/healthz", web::get().to(routes::healthz))
            .route("/readyz", web::get().to(routes::readyz));
        let closing = closing.clone();
        let http = HttpService::build()
            .keep_alive(server_config.keep_alive)
            .client_request_timeout(server_config.client_request_timeout)
            // An answer given before the body was read (403, 413, 503) is followed by
            // unread bytes; closing at once would make the kernel reset the connection
            // and the sender might never read the answer. Linger a second, as
            // actix-web's own server does.
            .client_disconnect_timeout(CLIENT_DISCONNECT_LINGER)
            .local_addr(local_addr)
            .graceful_shutdown_signal(move || {
                let closing = closing.clone();
                async move { closing.notified().await }
            })
            .on_connect_ext(connection::share_record)
            .h1(map_config(app, |_| AppConfig::default()));
        let connections = connections.clone();
        apply_fn_factory(http, move |tcp: TcpStream, http: &_| {
            connections.serve(tcp, http)
        })
    })?;
    Ok(server.run())
}

/// Whether a pipeline writes through the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolUse {
    /// The service: answers webhooks, so it spools as `delivery.mode` says.
    Serve,
    /// A one-shot run (`poll --once`): it answers nobody, so it waits for the brokers
    /// instead, and leaves the spool directory to the service that owns it.
    Bypass,
}

/// What takes authentic bodies, from webhooks and from polling alike: the delivery to
/// the sinks, and the auto-unsubscription when it is on. It also owns the background
/// work around them, and stops it in one order: what produces records first, then the
/// sinks, then whatever still runs.
pub struct Wiring {
    pub pipeline: Pipeline,
    pub auto_unsubscribe: Option<Arc<AutoUnsubscribe>>,
    cx: BuildContext,
    /// Halts what produces records (the poller) before the sinks close: a child of the
    /// application's token.
    producers: CancellationToken,
    polling: Option<JoinHandle<()>>,
}

impl Wiring {
    pub fn build(
        settings: &Settings,
        sinks: Vec<Arc<dyn Sink>>,
        cx: &BuildContext,
        spool_use: SpoolUse,
    ) -> Result<Self, StartupError> {
        let metrics = &cx.metrics;
        let mut delivery = Delivery::new(
            sinks,
            settings.dedup.build(cx)?,
            &settings.delivery,
            metrics.clone(),
        );
        if settings.spool.dir.is_some() && spool_use == SpoolUse::Serve {
            let spool = settings.spool.build(cx)?;
            // The forwarder runs until the delivery closes and is stopped there, with
            // the grace for records in flight: its own token, not a child of the
            // application's, so that nothing else can cut those records short.
            delivery = delivery.with_spool(
                spool,
                settings.delivery.effective_mode(true),
                CancellationToken::new(),
                &cx.tasks,
            );
        }
        let delivery = Arc::new(delivery);
        // Change events need the state they were derived from; it lives where the
        // dedup keys do (the same Redis connection, or the data directory).
        let state = match settings.events.milestones {
            MilestoneMode::Changes => Some(StateStore::open(
                &settings.events.state(),
                &cx.data_dir,
                delivery.dedup().redis().cloned(),
                metrics,
            )?),
            MilestoneMode::All | MilestoneMode::Off => None,
        };
        let mut pipeline =
            Pipeline::new(delivery.clone(), settings.events.context(), metrics.clone()).publishing(
                Publishing::new(&settings.events, state, settings.delivery.timeout, metrics),
            );
        let auto_unsubscribe = if settings.lifecycle.auto_unsubscribe {
            let api = VizionApi::new(&settings.vizion_api)?.with_metrics(metrics.clone());
            let record = match delivery.dedup().redis() {
                Some(redis) => UnsubscribedSet::redis(redis.clone()),
                None => UnsubscribedSet::file(&cx.data_dir)
                    .map_err(|e| StartupError::UnsubscribedSet(e.to_string()))?,
            };
            let auto = AutoUnsubscribe::new(
                api,
                pipeline.clone(),
                settings.events.context(),
                record,
                metrics.clone(),
                // Its own tracker: `finish` closes it and waits for unsubscriptions
                // in progress, which must not wait for every other background task.
                cx.shutdown.child_token(),
                TaskTracker::new(),
            );
            pipeline = pipeline.on_complete(auto.hook());
            Some(auto)
        } else {
            None
        };
        Ok(Self {
            pipeline,
            auto_unsubscribe,
            cx: cx.clone(),
            producers: cx.shutdown.child_token(),
            polling: None,
        })
    }

    /// A poller on this wiring, with its own rate-limited API client.
    pub fn poller(&self, settings: &Settings) -> Result<Poller, StartupError> {
        let metrics = &self.cx.metrics;
        let api = VizionApi::new(&settings.vizion_api)?
            .with_rate_limit(settings.poll.requests_per_second)
            .with_metrics(metrics.clone());
        Ok(Poller::new(
            api,
            self.pipeline.clone(),
            settings.poll.clone(),
            metrics.clone(),
        ))
    }

    /// Runs `poller` in the background until [`close`](Self::close).
    pub fn start_polling(&mut self, poller: Poller) {
        self.polling = Some(self.cx.spawn(poller.run(self.producers.clone())));
    }

    /// [`close_by`](Self::close_by) with the whole grace from now (a one-shot command).
    pub async fn close(&mut self) {
        self.close_by(Instant::now() + self.cx.grace).await;
    }

    /// Stops the poller and lets unsubscriptions in progress finish, by `deadline`;
    /// then flushes and closes the sinks; then stops whatever still runs in the
    /// background. The flush and the last step get at least [`LAST_STEP`] each even
    /// when the deadline has passed, so that the sinks are always flushed.
    pub async fn close_by(&mut self, deadline: Instant) {
        let left = || {
            deadline
                .saturating_duration_since(Instant::now())
                .max(LAST_STEP)
        };
        self.producers.cancel();
        if let Some(mut polling) = self.polling.take() {
            // A pass stops before its next update; the one being written finishes.
            if tokio::time::timeout_at(deadline, &mut polling)
                .await
                .is_err()
            {
                polling.abort();
            }
        }
        if let Some(auto) = &self.auto_unsubscribe {
            auto.finish(deadline.saturating_duration_since(Instant::now()))
                .await;
        }
        self.pipeline.delivery().close(left()).await;
        if let Some(state) = self.pipeline.publishing_in_force().state() {
            state.close().await;
        }
        if !self.cx.stop_tasks(left()).await {
            tracing::warn!("background tasks still running at shutdown were left behind");
        }
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })
}

/// Returns at the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
