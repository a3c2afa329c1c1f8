//! A TCP proxy for fault tests: copies bytes both ways, and on command cuts every
//! connection and refuses new ones until restored, or holds every byte in flight
//! (the connections stay open, nothing arrives) until restored.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    /// Bytes are read and held, not passed on.
    Paused,
    Cut,
}

pub struct TcpProxy {
    pub addr: SocketAddr,
    /// Every connection task watches it.
    state: watch::Sender<State>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on `listen` (port 0 for any) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen).await.expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let (state, _) = watch::channel(State::Open);
        let watcher = state.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *watcher.borrow() == State::Cut {
                    drop(client);
                    continue;
                }
                tokio::spawn(pipe(client, upstream, watcher.clone()));
            }
        });
        Self { addr, state, task }
    }

    /// Closes every open connection (dropping the bytes held) and refuses new ones.
    pub fn cut(&self) {
        self.state.send_replace(State::Cut);
    }

    /// Holds every byte from now on, both ways, on open connections and new ones.
    pub fn pause(&self) {
        self.state.send_replace(State::Paused);
    }

    /// Passes bytes again (what a pause held first).
    pub fn restore(&self) {
        self.state.send_replace(State::Open);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.state.send_replace(State::Cut);
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<State>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = copy(client_read, server_write, state.clone()) => {}
        _ = copy(server_read, client_write, state.clone()) => {}
        _ = state.wait_for(|s| *s == State::Cut) => {}
    }
}

/// Copies `from` to `to`, holding each chunk while paused.
async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut state: watch::Receiver<State>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        match state.wait_for(|s| *s != State::Paused).await {
            Ok(s) if *s == State::Open => {}
            _ => return,
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// A port that is free now (for a listener that must know its address in advance).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
