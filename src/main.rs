//! The `hss-exporter` binary: parse the command line, set up logging, load the config, run
//! until a signal.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use hss_exporter::app::{Exporter, Loader, Options};
use hss_exporter::cli::{Cli, Command};
use hss_exporter::config::Settings;
use hss_exporter::shutdown::{run_until_stopped, Signals};
use hss_exporter::{demo::Demo, metrics::Store, scheduler, telemetry, web::Security};
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(&cli.log_level, cli.log_format) {
        eprintln!("hss-exporter: --log.level: {e}");
        return ExitCode::FAILURE;
    }
    // Two worker threads are plenty to poll at API rate limits and serve a cached body; more
    // would buy nothing but a malloc arena each. TOKIO_WORKER_THREADS still overrides it.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        runtime.worker_threads(cores.min(2));
    }
    let outcome = runtime
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    outcome.unwrap_or_else(|e| {
        eprintln!("hss-exporter: {e:#}");
        ExitCode::FAILURE
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let command = cli.command;
    if let Some(Command::Demo) = command {
        let listen = cli.listen_address.as_deref().unwrap_or("127.0.0.1:9943");
        let mut signals = Signals::install();
        let demo = Demo::start(listen).await?;
        let listener = demo.listener().await?;
        let options = Options {
            web: web_security(&cli)?,
            ..Options::default()
        };
        let exporter = Exporter::start(&demo.settings, listener, options)?;
        let addr = exporter.addr;
        println!("hss-exporter demo: metrics at http://{addr}/metrics (status page http://{addr}/, simulated API {})", demo.api_url());
        run_until_stopped(&mut signals, &exporter).await;
        exporter.shutdown().await;
        demo.shutdown().await;
        return Ok(ExitCode::SUCCESS);
    }
    let source = cli.source();
    let loader: Loader = Arc::new(move || source.load());
    let Some(settings) = load(&loader) else {
        return Ok(ExitCode::FAILURE);
    };
    match command {
        Some(Command::CheckConfig) => print!("{}", scheduler::describe(&settings)),
        Some(Command::Once) => {
            let store = Arc::new(Store::new(settings.poll.stale_after));
            let failed = scheduler::poll_once(&settings, store.clone()).await?;
            std::io::stdout().write_all(&store.render())?;
            if failed > 0 {
                let total = settings.targets().count();
                eprintln!("hss-exporter: {failed} of {total} targets failed");
                return Ok(ExitCode::FAILURE);
            }
        }
        Some(Command::Demo) | None => {
            // Before the listener answers: a SIGHUP the moment it does must not kill us.
            let mut signals = Signals::install();
            let options = Options {
                loader: Some(loader),
                enable_lifecycle: cli.enable_lifecycle,
                web: web_security(&cli)?,
            };
            let listener = TcpListener::bind(settings.listen_address)
                .await
                .with_context(|| format!("cannot listen on {}", settings.listen_address))?;
            let exporter = Exporter::start(&settings, listener, options)?;
            // The exporter holds what it needs; 10,000 targets' worth of settings can go.
            drop(settings);
            run_until_stopped(&mut signals, &exporter).await;
            tracing::info!("shutting down");
            exporter.shutdown().await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Loads the configuration; on errors prints one line each to stderr and returns `None`.
fn load(loader: &Loader) -> Option<Settings> {
    loader()
        .inspect_err(|e| {
            for line in e.to_string().lines() {
                eprintln!("hss-exporter: {line}");
            }
        })
        .ok()
}

fn web_security(cli: &Cli) -> anyhow::Result<Option<Arc<Security>>> {
    let Some(path) = &cli.web_config_file else {
        return Ok(None);
    };
    let security = Security::load(path).context("--web.config.file")?;
    tracing::info!(file = %path.display(), ?security, "web endpoints protected");
    Ok(Some(Arc::new(security)))
}
