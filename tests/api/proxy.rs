//! A TCP proxy for fault tests: copies bytes both ways, and on command cuts every
//! connection and refuses new ones, or stalls them (holds every connection open
//! without passing a byte, like a network that drops packets), until restored.

use std::net::SocketAddr;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Cut,
    Stall,
}

pub struct TcpProxy {
    pub addr: SocketAddr,
    /// Every connection task watches it.
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on `listen` (port 0 for any) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen).await.expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Forward);
        let watcher = mode.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let current = *watcher.borrow();
                match current {
                    Mode::Cut => drop(client),
                    Mode::Stall => {
                        tokio::spawn(hold_while_stalled(client, None, watcher.clone()));
                    }
                    Mode::Forward => {
                        tokio::spawn(pipe(client, upstream, watcher.clone()));
                    }
                }
            }
        });
        Self { addr, mode, task }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Passes no more bytes, but keeps every connection open and accepts new ones:
    /// whoever is on the other side waits for answers that never come.
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Forwards again; connections held by a stall are closed.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Forward);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Cut);
        self.task.abort();
    }
}

async fn pipe(mut client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => return,
        _ = mode.wait_for(|mode| *mode != Mode::Forward) => {}
    }
    if *mode.borrow() == Mode::Stall {
        hold_while_stalled(client, Some(server), mode).await;
    }
}

/// Keeps the sockets open, passing nothing, until the stall ends; then closes them.
async fn hold_while_stalled(
    client: TcpStream,
    server: Option<TcpStream>,
    mut mode: watch::Receiver<Mode>,
) {
    let _ = mode.wait_for(|mode| *mode != Mode::Stall).await;
    drop((client, server));
}

/// A port that is free now (for a listener that must know its address in advance).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Keeps a child process for the length of a test and kills it at the end.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
