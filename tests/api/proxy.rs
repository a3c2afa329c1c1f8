//! A TCP proxy for fault tests: copies bytes both ways, and on command cuts every
//! connection and refuses new ones until restored, or stalls: keeps every connection
//! open but carries no byte, as a broker that hangs.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    pub addr: SocketAddr,
    /// `true` while cut. Every connection task watches it.
    cut: watch::Sender<bool>,
    /// `true` while stalled: bytes are held until it turns `false`.
    stalled: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on `listen` (port 0 for any) and forwards to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen).await.expect("proxy binds");
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let (stalled, _) = watch::channel(false);
        let watcher = cut.subscribe();
        let stall_watcher = stalled.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *watcher.borrow() {
                    drop(client);
                    continue;
                }
                tokio::spawn(pipe(
                    client,
                    upstream,
                    watcher.clone(),
                    stall_watcher.clone(),
                ));
            }
        });
        Self {
            addr,
            cut,
            stalled,
            task,
        }
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
        self.stalled.send_replace(false);
    }

    /// Holds every byte in both directions, connections left open, until restored.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.task.abort();
    }
}

async fn pipe(
    client: TcpStream,
    upstream: SocketAddr,
    mut cut: watch::Receiver<bool>,
    stalled: watch::Receiver<bool>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        _ = copy_unless_stalled(client_read, server_write, stalled.clone()) => {}
        _ = copy_unless_stalled(server_read, client_write, stalled) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
}

/// Copies `from` to `to` until either closes, holding each chunk while stalled.
async fn copy_unless_stalled(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    mut stalled: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if stalled.wait_for(|stalled| !*stalled).await.is_err() {
            return;
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

/// Keeps a child process for the length of a test and kills it at the end.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
