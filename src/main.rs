//! The `hss-exporter` binary: parse the command line, set up logging, load the config, run
//! until a signal.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use hss_exporter::app::{self, Exporter, Loader, Options};
use hss_exporter::cli::{Cli, Command};
use hss_exporter::config::Settings;
use hss_exporter::scheduler::discover::discover_all;
use hss_exporter::shutdown::{run_until_stopped, Signals};
use hss_exporter::{demo::Demo, metrics::Store, scheduler, server, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(&cli.log_level, cli.log_format()) {
        eprintln!("hss-exporter: --log.level: {e}");
        return ExitCode::FAILURE;
    }
    // Before the runtime starts its threads.
    let allocator = hss_exporter::memory::configure();
    tracing::debug!(?allocator, "allocator settings");
    let outcome = app::runtime()
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
        let options = Options::from_cli(&cli)?;
        let scheme = if options.web.as_ref().is_some_and(|w| w.is_tls()) {
            "https"
        } else {
            "http"
        };
        let mut signals = Signals::install();
        let demo = Demo::start(cli.listen_addresses.first()).await?;
        let listener = demo.listener()?;
        let exporter = Exporter::start(&demo.settings, listener, options)?;
        let (addr, path) = (exporter.addr, &cli.telemetry_path);
        println!("hss-exporter demo: metrics at {scheme}://{addr}{path} (status page {scheme}://{addr}/, simulated API {})", demo.api_url());
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
        Some(Command::CheckConfig { discover: false }) => {
            print!("{}", scheduler::describe(&settings));
        }
        Some(Command::CheckConfig { discover: true }) => {
            let found = discover_all(settings).await;
            print!("{}{}", found.report, scheduler::describe(&found.settings));
            if found.failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Some(Command::Once) => {
            let found = discover_all(settings).await;
            eprint!("{}", found.report);
            let settings = found.settings;
            let store = Arc::new(Store::new(settings.poll.stale_after));
            let failed = scheduler::poll_once(&settings, store.clone()).await?;
            std::io::stdout().write_all(&store.render())?;
            if failed > 0 || found.failed > 0 {
                let total = settings.targets().count();
                eprintln!("hss-exporter: {failed} of {total} targets failed");
                if found.failed > 0 {
                    eprintln!("hss-exporter: {} project discoveries failed", found.failed);
                }
                return Ok(ExitCode::FAILURE);
            }
        }
        Some(Command::Demo) | None => {
            // Before the listener answers: a SIGHUP the moment it does must not kill us.
            let mut signals = Signals::install();
            let listeners = server::bind_all(&settings.listen_addresses)?;
            let options = Options {
                loader: Some(loader),
                ..Options::from_cli(&cli)?
            };
            let exporter = Exporter::start_on(&settings, listeners, options)?;
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
