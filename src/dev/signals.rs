//! Every way of being told to stop, as one future.

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
