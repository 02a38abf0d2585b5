//! The `hss-exporter` binary: parse the command line, set up logging, load the config, run
//! until a signal.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::Parser;
use hss_exporter::app::{self, Exporter, Loader, Options};
use hss_exporter::cli::{Cli, Command};
use hss_exporter::config::Settings;
use hss_exporter::shutdown::{run_until_stopped, Signals};
use hss_exporter::{demo::Demo, metrics::Store, scheduler, server, telemetry, web};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(&cli.log_level, cli.log_format()) {
        eprintln!("hss-exporter: --log.level: {e}");
        return ExitCode::FAILURE;
    }
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
        let options = options(&cli)?;
        let listen = cli
            .listen_addresses
            .first()
            .map_or("127.0.0.1:9943", String::as_str);
        let mut signals = Signals::install();
        let demo = Demo::start(listen).await?;
        let listener = demo.listener()?;
        let exporter = Exporter::start(&demo.settings, listener, options)?;
        let addr = exporter.addr;
        let path = &cli.telemetry_path;
        println!("hss-exporter demo: metrics at http://{addr}{path} (status page http://{addr}/, simulated API {})", demo.api_url());
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
        Some(Command::CheckConfig { discover }) => {
            if !discover || !discovers(&settings) {
                print!("{}", scheduler::describe(&settings));
                return Ok(ExitCode::SUCCESS);
            }
            let (effective, report, failed) = discover_all(&settings).await?;
            print!("{report}{}", scheduler::describe(&effective));
            if failed > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Some(Command::Once) => {
            let settings = if discovers(&settings) {
                let (effective, report, _) = discover_all(&settings).await?;
                eprint!("{report}");
                effective
            } else {
                settings
            };
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
            let listeners = settings
                .listen_addresses
                .iter()
                .map(|&a| server::bind(a).with_context(|| format!("cannot listen on {a}")))
                .collect::<anyhow::Result<_>>()?;
            let options = Options {
                loader: Some(loader),
                ..options(&cli)?
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

/// Whether any account discovers its projects.
fn discovers(settings: &Settings) -> bool {
    settings.accounts.iter().any(|a| a.discover.is_some())
}

/// Discovers the projects of every discovering account once: the settings with them, what
/// was found (one line per account and project), and how many discoveries failed.
async fn discover_all(settings: &Settings) -> anyhow::Result<(Settings, String, usize)> {
    use std::fmt::Write as _;
    let http = hss_exporter::hss::http_client().context("cannot build the HTTP client")?;
    let mut found = std::collections::HashMap::new();
    let (mut report, mut failed) = (String::new(), 0);
    for account in &settings.accounts {
        let Some(done) =
            scheduler::discover::discover_once(&http, account, settings.poll.timeout).await
        else {
            continue;
        };
        match done.result {
            Ok(projects) => {
                let _ = writeln!(
                    report,
                    "discovered for account {}: {} projects",
                    done.account,
                    projects.len()
                );
                for p in &projects {
                    let _ = writeln!(report, "  {} {} (region {})", p.id, p.name, p.region);
                }
                found.insert(done.account, projects);
            }
            Err(e) => {
                failed += 1;
                let _ = writeln!(report, "discovery for account {} failed: {e}", done.account);
            }
        }
    }
    let effective = scheduler::discover::expand(settings, &found);
    Ok((effective, report, failed))
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

/// How the endpoints are served: the telemetry path, the lifecycle API, the web config.
fn options(cli: &Cli) -> anyhow::Result<Options> {
    let path = &cli.telemetry_path;
    web::check_telemetry_path(path).map_err(|e| anyhow!("--web.telemetry-path: {e}"))?;
    let security = match &cli.web_config_file {
        None => None,
        Some(file) => {
            let security = web::Security::load(file).context("--web.config.file")?;
            tracing::info!(file = %file.display(), ?security, "web endpoints protected");
            Some(Arc::new(security))
        }
    };
    Ok(Options {
        telemetry_path: path.clone(),
        loader: None,
        enable_lifecycle: cli.enable_lifecycle,
        web: security,
    })
}
