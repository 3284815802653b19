//! The `dev` command: binds the ports, creates the session, starts every part, shuts down.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpSocket};

use crate::config::{Config, Port};
use crate::events::Event;
use crate::lock::{AlreadyRunning, ProjectLock};
use crate::protocol::close;
use crate::server::Server;
use crate::term::reporter::Reporter;

/// The reason devices are given on shutdown.
const STOP_REASON: &str = "Server stopped";

/// A server that has bound its ports and is ready to run.
pub struct Dev {
    server: Arc<Server>,
    http: TcpListener,
    ws: TcpListener,
    /// This project's one-server lock, held until the server has cleaned up.
    lock: Option<ProjectLock>,
    http_limits: crate::http::serve::Limits,
}

impl Dev {
    /// Takes the project's lock (another server on it is a one-line error naming it), binds both
    /// ports (a port in use is a one-line error naming the flag) and creates the session.
    pub async fn bind(mut config: Config) -> Result<Self> {
        let mut lock = match ProjectLock::acquire(&config.project_dir) {
            Ok(lock) => Some(lock),
            Err(e) if e.is::<AlreadyRunning>() => return Err(e),
            // A read-only project: nothing of ours can be written there to clash either.
            Err(e) => {
                tracing::debug!("running without the project lock: {e:#}");
                None
            }
        };
        let budget = crate::limits::for_this_process(config.max_clients, crate::hub::REFUSALS_AT_ONCE);
        config.max_clients = budget.max_clients;
        let http_limits = crate::http::serve::Limits {
            max_connections: budget.http_connections,
            header_timeout: config.http_header_timeout,
        };
        // The HTTP port keeps clear of the WebSocket port's number and vice versa, so that
        // moving one on to a free port never takes the other's.
        let http = bind_port(config.bind, config.http_port, "--port", config.ws_port.number())?;
        let http_port = http.local_addr()?.port();
        let ws = bind_port(config.bind, config.ws_port, "--ws-port", http_port)?;
        let ws_port = ws.local_addr()?.port();
        if let Some(lock) = lock.as_mut() {
            if let Err(e) = lock.describe(std::process::id(), &format!("http://localhost:{http_port}")) {
                tracing::debug!("could not describe the project lock: {e:#}");
            }
        }
        let reporter = Arc::new(
            Reporter::new(config.json, config.show_qr).with_light_background(config.qr_light_background),
        );
        let server = Arc::new(Server::new(Arc::new(config), http_port, ws_port, reporter));
        Ok(Self {
            server,
            http,
            ws,
            lock,
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
            lock,
            http_limits,
        } = self;
        let session = server.session.current();
        // Pairing needs no file: a read-only project still serves devices that scan the QR code.
        if let Err(e) = crate::gradle::write_session(&server, &session) {
            tracing::warn!(
                "{e:#}; apps built now get no credentials in BuildConfig (scanning the QR code \
                 still pairs a device)"
            );
        }
        // For builds that apply gradle/jetstart.gradle (a custom --build-cmd): it applies this
        // script when present. Builds run by `dev` itself install it again before each build.
        if let Err(e) = crate::gradle::capture::install(&server.config.project_dir) {
            tracing::debug!("could not write the hot-inputs scripts: {e:#}");
        }

        let stop = tokio_util::sync::CancellationToken::new();
        let mut builder = crate::builder::spawn(server.clone(), stop.clone());
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
        tracing::info!("ready in {} ms", server.started.elapsed().as_millis());
        builder.server_ready();
        if server.config.adb {
            let (server, stop) = (server.clone(), stop.clone());
            tokio::spawn(async move { crate::adb::answer(&server, &stop).await });
        }
        if server.config.open_dashboard {
            crate::http::browser::open_dashboard(server.config.bind, server.http_port);
        }

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
        // Only now may another server take the project: this one's files are gone.
        drop(lock);
        Ok(())
    }
}

/// Connections the kernel may hold for us before `accept`. std and mio ask for 128, which a
/// burst of devices (a classroom, a load test) overflows: the extra SYNs are dropped and those
/// devices wait a full second for the retransmit. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// How many ports after a taken default port are tried before giving up.
const NEXT_FREE_PORTS: u16 = 20;

/// Binds `port` as asked: an exact port or an error naming the flag; a default one, or the next
/// free one after it (not `avoid`), said once.
fn bind_port(addr: std::net::IpAddr, port: Port, flag: &str, avoid: u16) -> Result<TcpListener> {
    let first = match port {
        Port::Exact(port) => return bind(addr, port, flag),
        Port::Preferred(first) => first,
    };
    let candidates = (first..=first.saturating_add(NEXT_FREE_PORTS)).filter(|p| *p != avoid);
    for candidate in candidates {
        match listen(SocketAddr::new(addr, candidate)) {
            Ok(listener) => {
                if candidate != first {
                    tracing::warn!(
                        "port {first} is in use (another jetstart-rs, or something else); using \
                         {candidate} (pass {flag} <PORT> to choose)"
                    );
                }
                return Ok(listener);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "could not listen on {addr}:{candidate} (set with {flag} and --bind)"
                )))
            }
        }
    }
    anyhow::bail!(
        "ports {first} to {} are all in use; choose one with {flag} <PORT> (0 picks a free one)",
        first.saturating_add(NEXT_FREE_PORTS)
    )
}

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
    let shortcuts = crate::keys::Shortcuts::install(dev.server());
    let result = dev
        .run(crate::keys::quit_or(shortcuts.as_ref(), shutdown_signal()))
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
    fn a_default_port_in_use_moves_on_but_an_exact_one_fails() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let taken = bind([127, 0, 0, 1].into(), 0, "--port").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let moved = bind_port(
            [127, 0, 0, 1].into(),
            Port::Preferred(port),
            "--port",
            port.wrapping_add(1),
        )
        .expect("the next free port");
        let got = moved.local_addr().expect("addr").port();
        assert!(
            got != port && got != port.wrapping_add(1),
            "{got} (taken {port}, avoided the next)"
        );
        assert!(bind_port([127, 0, 0, 1].into(), Port::Exact(port), "--port", 0).is_err());
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
