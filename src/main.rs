//! The `jetstart-rs` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use jetstart::cli::{Cli, Command};
use tracing_subscriber::filter::{filter_fn, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How long exit waits for queued output: a reader that stopped reading must not keep the
/// process alive.
const OUTPUT_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose, cli.quiet);
    let result = run(cli);
    // Output goes through a writer thread; what is queued (the last events) must reach the
    // terminal or pipe before the process ends, and before the error line below.
    jetstart::term::output::flush(OUTPUT_FLUSH_LIMIT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, no backtrace.
            eprintln!("error: {e:#}");
            if e.downcast_ref::<jetstart::cli::UsageError>().is_some() {
                ExitCode::from(2) // bad usage, as clap's own errors
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => {
            let config = jetstart::cli::config::from_args(args)?;
            raise_fd_limit();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(jetstart::dev::run(config))
        }
        Command::Init(args) => jetstart::gradle::init(&args.project),
        Command::Connect(args) => runtime()?
            .block_on(async { jetstart::client::connect::run(target(&args.target)?, args.json).await }),
        Command::Logs(args) => {
            let filter = jetstart::term::logline::Filter {
                min_level: args.level,
                tag: args.tag,
            };
            runtime()?.block_on(async {
                jetstart::client::logs::run(target(&args.target)?, filter, args.json).await
            })
        }
        Command::Completions(args) => {
            jetstart::cli::print_completions(args.shell);
            Ok(())
        }
    }
}

/// `connect` and `logs` are one socket each: a single thread is plenty.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

fn target(args: &jetstart::cli::TargetArgs) -> anyhow::Result<jetstart::client::Target> {
    match &args.payload {
        // A payload that isn't one is how the tool was called: exit 2.
        Some(payload) => jetstart::client::Target::from_payload(payload)
            .map_err(|e| jetstart::cli::UsageError(format!("{e:#}")).into()),
        None => jetstart::client::Target::from_project(&args.project),
    }
}

/// Each device is a socket: lift the soft open-files limit (often 1024) to the hard limit so
/// that `--max-clients` in the thousands works without tuning the shell.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Logs go to stderr, each with the local time of day. `RUST_LOG` wins over -v/-q.
fn init_tracing(verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let use_color =
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,jetstart={level},jetstart_rs={level}")));
    // tungstenite logs every frame's payload and every message at TRACE, a device's
    // `client:connect` and its token included: never, whatever RUST_LOG asks for.
    let no_payloads = filter_fn(|meta| {
        *meta.level() < tracing::Level::TRACE
            || !(meta.target().starts_with("tungstenite") || meta.target().starts_with("tokio_tungstenite"))
    });
    let output = tracing_subscriber::fmt::layer()
        // Blanks the build spinner's line before each log line.
        .with_writer(jetstart::term::output::stderr)
        .with_ansi(use_color)
        .with_timer(jetstart::term::LocalClock)
        .with_target(false)
        .with_filter(filter.and(no_payloads));
    tracing_subscriber::registry().with(output).init();
}
