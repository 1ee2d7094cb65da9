//! A loopback TCP proxy in front of the testbed's apiserver that a test can pause: while
//! paused it forwards no byte in either direction and leaves every connection open, as an
//! apiserver stopped with SIGSTOP would look to that one client (and to nobody else: other
//! tests keep their apiserver).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::cluster::kubeconfig;

/// The apiserver as the testbed serves it.
const APISERVER: &str = "10.244.0.1:6443";

pub struct PausableProxy {
    addr: SocketAddr,
    paused: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// A copy of the testbed kubeconfig whose server is this proxy.
    kubeconfig: tempfile::NamedTempFile,
}

/// Waits while `paused` says so.
async fn while_paused(paused: &mut watch::Receiver<bool>) {
    let _ = paused.wait_for(|p| !*p).await;
}

/// Copies one direction, holding every chunk while paused.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        while_paused(&mut paused).await;
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        while_paused(&mut paused).await;
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl PausableProxy {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (paused, watcher) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let paused = watcher.clone();
                tokio::spawn(async move {
                    let mut waiting = paused.clone();
                    while_paused(&mut waiting).await;
                    let Ok(server) = TcpStream::connect(APISERVER).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, paused.clone()),
                        pump(server_read, client_write, paused),
                    );
                });
            }
        });
        // The apiserver's certificate names 127.0.0.1, so only the address changes.
        let original = std::fs::read_to_string(kubeconfig()?).context("reading the kubeconfig")?;
        let rewritten =
            original.replace(&format!("https://{APISERVER}"), &format!("https://{addr}"));
        anyhow::ensure!(
            rewritten != original,
            "the testbed kubeconfig does not name https://{APISERVER}"
        );
        let mut file = tempfile::NamedTempFile::new()?;
        std::io::Write::write_all(&mut file, rewritten.as_bytes())?;
        Ok(Self {
            addr,
            paused,
            task,
            kubeconfig: file,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The kubeconfig that reaches the apiserver through this proxy.
    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.path().to_path_buf()
    }

    pub fn pause(&self) {
        let _ = self.paused.send(true);
    }

    pub fn resume(&self) {
        let _ = self.paused.send(false);
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
