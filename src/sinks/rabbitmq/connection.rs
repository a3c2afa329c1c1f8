//! Keeps one connection to the broker with a small pool of confirm-mode channels, and
//! reconnects in a background task with capped exponential backoff whenever the
//! connection is lost. Publishers wait for a connection rather than fail at once, so
//! that a short reconnect costs latency, not a 503; their caller's deadline bounds
//! the wait.

use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Event};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::config::{describe_uri, RabbitmqConfig};
use super::topology;
use crate::config::BuildContext;
use crate::retry::RetryPolicy;
use crate::sinks::SinkHealth;

/// How often a live connection's status is checked besides its error events.
const HEALTH_CHECK: Duration = Duration::from_millis(250);

/// One live connection and its publishing channels.
pub struct Session {
    connection: Connection,
    channels: Vec<Mutex<Channel>>,
    next: AtomicUsize,
}

impl Session {
    pub fn is_connected(&self) -> bool {
        self.connection.status().connected()
    }

    /// Whether the connection is or becomes closed within `wait`.
    pub async fn closes_within(&self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if !self.is_connected() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The next channel of the pool, reopened first if the broker closed it (a
    /// channel-level error leaves the connection up).
    pub async fn channel(&self) -> lapin::Result<Channel> {
        let slot = &self.channels[self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len()];
        let channel = lock(slot).clone();
        if channel.status().connected() {
            return Ok(channel);
        }
        let fresh = open_channel(&self.connection).await?;
        *lock(slot) = fresh.clone();
        Ok(fresh)
    }
}

fn lock(slot: &Mutex<Channel>) -> std::sync::MutexGuard<'_, Channel> {
    // A panic while holding the lock cannot leave a Channel half-written.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn open_channel(connection: &Connection) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// The connection as publishers see it: the current session, if connected.
pub struct ConnectionManager {
    current: watch::Receiver<Option<Arc<Session>>>,
    /// A child of the application's token: cancelled by [`close`](Self::close), or
    /// with the application.
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl ConnectionManager {
    /// Starts connecting in the background, on the context's tracker; returns at once.
    /// Needs a Tokio runtime.
    pub fn start(
        config: RabbitmqConfig,
        uri: AMQPUri,
        up: Arc<SinkHealth>,
        cx: &BuildContext,
    ) -> Self {
        let (current_tx, current) = watch::channel(None);
        let stop = cx.shutdown.child_token();
        up.set(false);
        let task = cx.spawn(maintain(config, uri, current_tx, stop.clone(), up));
        Self {
            current,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// The live session, if there is one now.
    pub fn session_now(&self) -> Option<Arc<Session>> {
        self.current
            .borrow()
            .as_ref()
            .filter(|s| s.is_connected())
            .cloned()
    }

    /// The live session, waiting for one while reconnecting. None once closed.
    pub async fn session(&self) -> Option<Arc<Session>> {
        if let Some(session) = self.session_now() {
            return Some(session);
        }
        let mut current = self.current.clone();
        loop {
            if self.stop.is_cancelled() {
                return None;
            }
            if let Some(session) = current.borrow_and_update().as_ref() {
                if session.is_connected() {
                    return Some(session.clone());
                }
            }
            // A session that is set but no longer connected is replaced shortly.
            tokio::select! {
                changed = current.changed() => if changed.is_err() { return None },
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    /// Stops reconnecting and closes the connection.
    pub async fn close(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl Drop for ConnectionManager {
    fn drop(&mut self) {
        // Nobody can publish through it any more: stop reconnecting.
        self.stop.cancel();
    }
}

/// Connects, waits for the connection to be lost, and starts over, until stopped.
async fn maintain(
    config: RabbitmqConfig,
    uri: AMQPUri,
    current: watch::Sender<Option<Arc<Session>>>,
    stop: CancellationToken,
    up: Arc<SinkHealth>,
) {
    let broker = describe_uri(&uri);
    let policy = RetryPolicy::unbounded(config.reconnect_min, config.reconnect_max);
    let mut backoff = policy.backoff();
    loop {
        let attempt = tokio::time::timeout(config.connect_timeout, connect(&config, uri.clone()));
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = stop.cancelled() => break,
        };
        match outcome {
            Ok(Ok((session, events))) => {
                backoff = policy.backoff();
                current.send_replace(Some(session.clone()));
                up.set(true);
                tracing::info!(%broker, channels = config.channels, "connected to RabbitMQ");
                let lost = tokio::select! {
                    reason = watch_until_lost(&session, events, &up) => Some(reason),
                    _ = stop.cancelled() => None,
                };
                current.send_replace(None);
                up.set(false);
                match lost {
                    Some(reason) => {
                        tracing::warn!(%broker, %reason, "lost the RabbitMQ connection; reconnecting")
                    }
                    None => {
                        let _ = session.connection.close(200, "shutting down".into()).await;
                        break;
                    }
                }
            }
            Ok(Err(error)) => {
                tracing::warn!(%broker, %error, retry_in = ?backoff.upcoming(), "cannot connect to RabbitMQ")
            }
            Err(_) => tracing::warn!(
                %broker,
                timeout = ?config.connect_timeout,
                retry_in = ?backoff.upcoming(),
                "connecting to RabbitMQ timed out"
            ),
        }
        if !backoff.wait(&stop).await {
            break;
        }
    }
    current.send_replace(None);
    up.set(false);
}

type Events = std::pin::Pin<Box<dyn futures_util::Stream<Item = Event> + Send>>;

/// Opens the connection, declares the topology, and opens the channel pool.
async fn connect(
    config: &RabbitmqConfig,
    uri: AMQPUri,
) -> Result<(Arc<Session>, Events), lapin::Error> {
    // Client auto-recovery stays off: this task owns reconnection, so that a
    // publisher never writes into a channel whose state it cannot see.
    let properties =
        ConnectionProperties::default().with_connection_name(config.connection_name.clone().into());
    let connection = Connection::connect_uri(uri, properties).await?;
    let events: Events = Box::pin(connection.events_listener());
    let setup = async {
        if config.declare_topology {
            let channel = connection.create_channel().await?;
            topology::declare(&channel, config).await?;
            let _ = channel.close(200, "topology declared".into()).await;
        }
        let mut channels = Vec::with_capacity(config.channels);
        for _ in 0..config.channels {
            channels.push(Mutex::new(open_channel(&connection).await?));
        }
        Ok::<_, lapin::Error>(channels)
    };
    match setup.await {
        Ok(channels) => Ok((
            Arc::new(Session {
                connection,
                channels,
                next: AtomicUsize::new(0),
            }),
            events,
        )),
        Err(error) => {
            let _ = connection.close(200, "setup failed".into()).await;
            Err(error)
        }
    }
}

/// Returns why the connection was lost, once its status is no longer connected. An
/// error event alone is not enough: channel-level errors are reported there too.
/// Meanwhile `up` follows the broker's blocking of publishers.
async fn watch_until_lost(session: &Session, events: Events, up: &SinkHealth) -> String {
    let mut events = pin!(events);
    let mut check = tokio::time::interval(HEALTH_CHECK);
    let mut last_error = None;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Event::Error(error)) => {
                    if !session.is_connected() {
                        return error.to_string();
                    }
                    last_error = Some(error.to_string());
                }
                Some(Event::ConnectionBlocked(reason)) => {
                    up.set(false);
                    tracing::warn!(%reason, "RabbitMQ blocks publishing; writes wait");
                }
                Some(Event::ConnectionUnblocked) => {
                    up.set(true);
                    tracing::info!("RabbitMQ accepts publishing again");
                }
                Some(_) => {}
                None => return "the connection's event stream ended".into(),
            },
            _ = check.tick() => if !session.is_connected() {
                return last_error.unwrap_or_else(|| "the connection is closed".into());
            }
        }
    }
}
