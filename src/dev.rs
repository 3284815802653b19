//! The `dev` command: binds the ports, creates the session, starts every part, shuts down.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::protocol::close;
use crate::report::{Event, Reporter};
use crate::server::Server;

/// The reason devices are given on shutdown.
const STOP_REASON: &str = "Server stopped";

/// A server that has bound its ports and is ready to run.
pub struct Dev {
    server: Arc<Server>,
    http: TcpListener,
    ws: TcpListener,
}

impl Dev {
    /// Binds both ports (a port in use is a one-line error naming the flag) and creates the session.
    pub async fn bind(config: Config) -> Result<Self> {
        let http = bind(config.bind, config.http_port, "--port").await?;
        let ws = bind(config.bind, config.ws_port, "--ws-port").await?;
        let http_port = http.local_addr()?.port();
        let ws_port = ws.local_addr()?.port();
        let reporter = Arc::new(Reporter::new(config.json, config.show_qr));
        let server = Arc::new(Server::new(Arc::new(config), http_port, ws_port, reporter));
        Ok(Self { server, http, ws })
    }

    /// The shared state (for tests and embedding).
    pub fn server(&self) -> Arc<Server> {
        self.server.clone()
    }

    /// Runs until `shutdown` completes, then stops cleanly (SPEC §1 shutdown).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let Self { server, http, ws } = self;
        let session = server.session.current();
        crate::gradle::write_session(&server, &session)?;

        let stop = tokio_util::sync::CancellationToken::new();
        let builder = crate::build::spawn(server.clone(), stop.clone());
        let expiry = tokio::spawn(crate::expiry::run(server.clone(), stop.clone()));

        let hub = server.hub.clone();
        let hub_task = tokio::spawn(async move { hub.serve(ws).await });
        let stop_http = tokio_util::sync::CancellationToken::new();
        let app = crate::http::router(server.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let http_stop = stop_http.clone();
        let http_task = tokio::spawn(async move {
            axum::serve(http, app)
                .with_graceful_shutdown(http_stop.cancelled_owned())
                .await
        });

        server.reporter.emit(server.ready_event());
        server.reporter.banner(&server.pairing(&session));

        shutdown.await;
        tracing::info!("stopping");
        stop.cancel();
        server.hub.shutdown(STOP_REASON).await;
        // The builder kills a running build's process group when `stop` fires.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), builder).await;
        expiry.abort();
        stop_http.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), http_task).await;
        hub_task.abort();
        if let Err(e) = crate::gradle::remove_session(&server) {
            tracing::warn!("could not clean up the session file: {e:#}");
        }
        debug_assert_eq!(close::GOING_AWAY, 1001);
        server.reporter.emit(Event::Stopped {});
        Ok(())
    }
}

async fn bind(addr: std::net::IpAddr, port: u16, flag: &str) -> Result<TcpListener> {
    TcpListener::bind((addr, port)).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow::anyhow!(
                "port {port} is already in use; choose another with {flag} <PORT> (0 picks a free one)"
            )
        } else {
            anyhow::Error::new(e).context(format!(
                "could not listen on {addr}:{port} (set with {flag} and --bind)"
            ))
        }
    })
}

/// Resolves when Ctrl+C or SIGTERM arrives. The handlers are installed when this is called, not
/// when the future is first polled: a signal sent right after `ready` must still shut down cleanly
/// (and remove the session file) instead of killing the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {},
                () = wait(terminate) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// `jetstart-rs dev`: resolve, bind, run until a signal.
pub async fn run(config: Config) -> Result<()> {
    let dev = Dev::bind(config).await.context("could not start the server")?;
    // Keyboard shortcuts on an interactive terminal; `shortcuts` restores the terminal on drop.
    let shortcuts = crate::term::keys::Shortcuts::install(dev.server());
    let result = dev
        .run(crate::term::keys::quit_or(shortcuts.as_ref(), shutdown_signal()))
        .await;
    drop(shortcuts);
    result
}
