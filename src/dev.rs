//! The `dev` command: binds the ports, creates the session, starts every part, shuts down.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpSocket};

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
    http_limits: crate::http::serve::Limits,
}

impl Dev {
    /// Binds both ports (a port in use is a one-line error naming the flag) and creates the session.
    pub async fn bind(mut config: Config) -> Result<Self> {
        let budget = crate::limits::for_this_process(config.max_clients, crate::hub::REFUSALS_AT_ONCE);
        config.max_clients = budget.max_clients;
        let http_limits = crate::http::serve::Limits {
            max_connections: budget.http_connections,
            header_timeout: config.http_header_timeout,
        };
        let http = bind(config.bind, config.http_port, "--port")?;
        let ws = bind(config.bind, config.ws_port, "--ws-port")?;
        let http_port = http.local_addr()?.port();
        let ws_port = ws.local_addr()?.port();
        let reporter = Arc::new(Reporter::new(config.json, config.show_qr));
        let server = Arc::new(Server::new(Arc::new(config), http_port, ws_port, reporter));
        Ok(Self {
            server,
            http,
            ws,
            http_limits,
        })
    }

    /// The shared state (for tests and embedding).
    pub fn server(&self) -> Arc<Server> {
        self.server.clone()
    }

    /// Runs until `shutdown` completes, then stops cleanly (SPEC §1 shutdown).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let Self {
            server,
            http,
            ws,
            http_limits,
        } = self;
        let session = server.session.current();
        crate::gradle::write_session(&server, &session)?;
        // For builds that apply gradle/jetstart.gradle (a custom --build-cmd): it applies this
        // script when present. Builds run by `dev` itself install it again before each build.
        if let Err(e) = crate::gradle::capture::install(&server.config.project_dir) {
            tracing::debug!("could not write the hot-inputs scripts: {e:#}");
        }

        let stop = tokio_util::sync::CancellationToken::new();
        let mut builder = crate::build::spawn(server.clone(), stop.clone());
        let expiry = tokio::spawn(crate::expiry::run(server.clone(), stop.clone()));

        let hub = server.hub.clone();
        let hub_task = tokio::spawn(async move { hub.serve(ws).await });
        let stop_http = tokio_util::sync::CancellationToken::new();
        let app = crate::http::router(server.clone());
        let http_task = tokio::spawn(crate::http::serve::serve(
            http,
            app,
            http_limits,
            stop_http.clone(),
        ));

        server.reporter.emit(server.ready_event());
        server.reporter.banner(&server.pairing(&session));
        builder.server_ready();

        shutdown.await;
        tracing::info!("stopping");
        // Everything stops at once, so the slowest part alone sets the time (SPEC: within 2 s).
        // The builder kills a running build's process group when `stop` fires.
        stop.cancel();
        stop_http.cancel();
        let part = std::time::Duration::from_millis(300);
        // A build or HTTP connection that outlives its share is dropped with the runtime.
        // The expiry task is not aborted: a rotation in flight runs on a blocking thread that an
        // abort would not stop, and it must finish before the session file is removed below.
        let _ = tokio::join!(
            server.hub.shutdown(STOP_REASON),
            tokio::time::timeout(part, builder.task),
            tokio::time::timeout(part, expiry),
            tokio::time::timeout(part, http_task),
        );
        hub_task.abort();
        if let Err(e) = server.remove_session_files() {
            tracing::warn!("could not clean up the session file: {e:#}");
        }
        debug_assert_eq!(close::GOING_AWAY, 1001);
        server.reporter.emit(Event::Stopped {});
        Ok(())
    }
}

/// Connections the kernel may hold for us before `accept`. std and mio ask for 128, which a
/// burst of devices (a classroom, a load test) overflows: the extra SYNs are dropped and those
/// devices wait a full second for the retransmit. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: std::net::IpAddr, port: u16, flag: &str) -> Result<TcpListener> {
    listen(SocketAddr::new(addr, port)).map_err(|e| {
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

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As std and mio do: a restarted server can rebind while old connections sit in TIME_WAIT
    // (a port with a live listener still fails with AddrInUse).
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves when Ctrl+C, SIGTERM, SIGHUP (the terminal window closed, the SSH session dropped)
/// or SIGQUIT arrives: every way of being told to stop is a clean stop, so the token never stays
/// in the marker block and no build is left running. The handlers are installed when this is
/// called, not when the future is first polled: a signal sent right after `ready` must still
/// shut down cleanly (and remove the session file) instead of killing the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        let hangup = signal(SignalKind::hangup()).ok();
        let quit = signal(SignalKind::quit()).ok();
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
                () = wait(hangup) => {},
                () = wait(quit) => {},
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel completes handshakes for a listener nobody accepts from, up to its backlog;
    /// beyond it, SYNs are dropped and those connects stall. 300 must all get through (fewer
    /// where the kernel caps every backlog lower: nothing a server can do about that).
    #[tokio::test]
    async fn a_burst_of_connections_fits_in_the_backlog() {
        let somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        let listener = bind([127, 0, 0, 1].into(), 0, "--port").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connects = (0..somaxconn.min(300)).map(|_| tokio::net::TcpStream::connect(addr));
        let all = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            futures_util::future::join_all(connects),
        )
        .await
        .expect("every connect completes without a SYN retransmit");
        assert!(all.iter().all(Result::is_ok));
    }

    #[test]
    fn a_port_in_use_names_the_port_and_the_flag() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let taken = bind([127, 0, 0, 1].into(), 0, "--port").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let error = bind([127, 0, 0, 1].into(), port, "--ws-port")
            .expect_err("second listener on the same port")
            .to_string();
        assert!(
            error.contains(&port.to_string()) && error.contains("--ws-port"),
            "{error}"
        );
    }
}
