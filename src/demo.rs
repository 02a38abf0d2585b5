//! `hss-exporter demo`: the simulated API with a realistic scenario, and a real exporter
//! polling it over HTTP, so the product can be seen without a cloud account.

use std::time::Duration;

use rand::Rng;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError, Env, Settings};
use crate::model::{Registry, RegistryStatus, RegistryType};
use crate::sim::{Fault, FaultRule, Sim, SimServer};

/// The demo's `prod` project.
pub const PROD_PROJECT: &str = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
/// The demo's `staging` project.
pub const STAGING_PROJECT: &str = "f9e8d7c6b5a40312a1b2c3d4e5f60718";
const DEMO_AK: &str = "DEMOACCESSKEY0000001";
const DEMO_SK: &str = "demo-secret-key-that-only-the-simulator-knows";
const DEMO_PASSWORD: &str = "demo-password";
/// Where the demo serves unless told otherwise: loopback, as it is for a look only.
const DEFAULT_LISTEN: &str = "127.0.0.1:9943";
/// How often the scenario's numbers move.
const CHURN_EVERY: Duration = Duration::from_secs(7);

/// The demo's configuration, written as a user would write it.
fn config_yaml(api: &str, listen: &str) -> String {
    format!(
        r#"
web:
  listen_address: "{listen}"
poll:
  interval: 10s
  timeout: 5s
  stale_after: 2m
accounts:
  - name: prod
    region: cn-north-4
    endpoint: {api}
    rate_limit_per_minute: 30
    auth:
      ak_sk: {{ access_key_env: DEMO_AK, secret_key_env: DEMO_SK }}
    projects:
      - project_id: {PROD_PROJECT}
        registry_types: [SwrPrivate, Harbor, Jfrog]
        registries: true
  - name: staging
    region: ap-southeast-1
    endpoint: {api}
    rate_limit_per_minute: 30
    auth:
      iam_password: {{ domain: acme, user: ops, password_env: DEMO_PASSWORD, iam_endpoint: {api} }}
    projects:
      - project_id: {STAGING_PROJECT}
"#
    )
}

/// The registry of `prod` whose access comes and goes.
const FLAPPING_REGISTRY: &str = "reg-harbor-03";

/// `prod`'s registries, listed one by one: two Harbor registries fail for good (the carrying
/// cluster is down; the registry is unreachable), a third comes and goes, one is being
/// connected.
fn prod_registries() -> Vec<Registry> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut out = Vec::new();
    for (t, count, host) in [
        (RegistryType::Harbor, 8, "harbor"),
        (RegistryType::SwrPrivate, 12, "swr"),
        (RegistryType::Jfrog, 3, "jfrog"),
    ] {
        for i in 1..=count {
            let (status, reason) = match (t, i) {
                (RegistryType::Harbor, 1) => (RegistryStatus::Fail, "CREATE_JOB_FAILED"),
                (RegistryType::Harbor, 2 | 3) => (RegistryStatus::Fail, "REQUEST_API_ERROR"),
                (RegistryType::Harbor, 8) => (RegistryStatus::Accessing, ""),
                _ => (RegistryStatus::Success, ""),
            };
            let failing = status == RegistryStatus::Fail;
            out.push(Registry {
                id: format!("reg-{host}-{i:02}"),
                name: format!("{host}-{i:02}"),
                registry_type: t.as_str().into(),
                addr: format!("{host}-{i:02}.registry.example.com"),
                connect_cluster_id: format!("cce-prod-{}", i % 2 + 1),
                status: Some(status),
                fail_reason: reason.into(),
                images_num: Some(10 + i * 7),
                // Failing registries stopped syncing an hour ago.
                latest_sync_time_ms: Some(
                    now_ms
                        - if failing {
                            3_600_000
                        } else {
                            60_000 * i as i64
                        },
                ),
            });
        }
    }
    out
}

/// The statistics of `prod` from its registries, as HSS counts them.
fn prod_stats_from_registries(sim: &Sim) {
    let registries = sim.registries(PROD_PROJECT, None);
    for t in [
        RegistryType::SwrPrivate,
        RegistryType::Harbor,
        RegistryType::Jfrog,
    ] {
        let count = |status| {
            registries
                .iter()
                .filter(|r| r.registry_type == t.as_str() && r.status == Some(status))
                .count() as u64
        };
        sim.set_stats(
            PROD_PROJECT,
            None,
            t,
            count(RegistryStatus::Fail),
            count(RegistryStatus::Success),
        );
    }
}

/// The simulated API with the demo's scenario: `prod`/`Harbor` has unreachable registries
/// (listed one by one with their reasons), `prod`/`Jfrog` answers 503 to two calls in six
/// (so its `up` flaps), the rest is healthy.
pub fn scenario() -> Sim {
    let sim = Sim::new();
    sim.set_logging(false);
    sim.add_access_key(DEMO_AK, DEMO_SK);
    sim.add_user("acme", "ops", DEMO_PASSWORD);
    sim.set_rate_limit(Some(60));
    sim.set_registries(PROD_PROJECT, None, prod_registries());
    prod_stats_from_registries(&sim);
    sim.set_stats(STAGING_PROJECT, None, RegistryType::SwrPrivate, 0, 6);
    sim.set_stats(STAGING_PROJECT, None, RegistryType::SwrShared, 0, 2);
    sim.add_fault(
        FaultRule::always(Fault::Status(503))
            .project(PROD_PROJECT)
            .registry_type("Jfrog")
            .pattern(2, 6),
    );
    sim
}

/// Moves the success counts of `staging` a little; one of `prod`'s Harbor registries comes
/// and goes, so `prod`/`Harbor` has 2 or 3 failing registries.
async fn churn(sim: Sim, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(CHURN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let series = [
        (STAGING_PROJECT, RegistryType::SwrPrivate),
        (STAGING_PROJECT, RegistryType::SwrShared),
    ];
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut rng = rand::thread_rng();
        for (project, t) in series {
            let Some(now) = sim.stats(project, None, t) else {
                continue;
            };
            let success = (now.success_num as i64 + rng.gen_range(-1..=1)).clamp(1, 20) as u64;
            sim.set_stats(project, None, t, 0, success);
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for mut r in sim.registries(PROD_PROJECT, None) {
            if r.id == FLAPPING_REGISTRY && rng.gen_bool(0.5) {
                let failing = r.status == Some(RegistryStatus::Fail);
                r.status = Some(if failing {
                    RegistryStatus::Success
                } else {
                    RegistryStatus::Fail
                });
                r.fail_reason = if failing {
                    String::new()
                } else {
                    "REQUEST_API_ERROR".into()
                };
            }
            if r.status == Some(RegistryStatus::Success) {
                r.latest_sync_time_ms = Some(now_ms - rng.gen_range(0..300_000));
                r.images_num = r.images_num.map(|n| n + rng.gen_range(0..=1));
            }
            sim.put_registry(PROD_PROJECT, None, r);
        }
        prod_stats_from_registries(&sim);
    }
}

/// Why the demo could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The simulated API could not bind a loopback port.
    #[error("cannot start the simulated API")]
    Simulator(#[source] std::io::Error),
    /// The demo's configuration was refused (a bad `--web.listen-address`).
    #[error("the demo configuration is invalid")]
    Config(#[source] ConfigError),
    /// The exporter's address cannot be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address asked for.
        addr: crate::model::ListenAddress,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
}

/// The running demo: the simulator, its churn, and the settings for an exporter pointed at it.
pub struct Demo {
    /// The configuration an exporter polling the simulator runs on.
    pub settings: Settings,
    /// The simulator's state, to change the scenario.
    pub sim: Sim,
    /// The simulator's server; stops when the demo does.
    server: SimServer,
    /// Stops the churn.
    cancel: CancellationToken,
}

impl Demo {
    /// Starts the simulated API on loopback and builds the exporter's settings for it.
    pub async fn start(listen_address: Option<&String>) -> Result<Demo, DemoError> {
        let listen_address = listen_address.map_or(DEFAULT_LISTEN, String::as_str);
        let sim = scenario();
        let server = sim
            .start(([127, 0, 0, 1], 0).into())
            .await
            .map_err(DemoError::Simulator)?;
        let env: Env = [
            ("DEMO_AK", DEMO_AK),
            ("DEMO_SK", DEMO_SK),
            ("DEMO_PASSWORD", DEMO_PASSWORD),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let settings = config::load_str(&config_yaml(&server.url(), listen_address), &env)
            .map_err(DemoError::Config)?;
        let cancel = CancellationToken::new();
        tokio::spawn(churn(sim.clone(), cancel.clone()));
        Ok(Demo {
            settings,
            sim,
            server,
            cancel,
        })
    }

    /// The simulated API's base URL.
    pub fn api_url(&self) -> String {
        self.server.url()
    }

    /// Binds the exporter's address.
    pub fn listener(&self) -> Result<TcpListener, DemoError> {
        let addr = self.settings.listen_addresses[0];
        crate::server::bind(addr).map_err(|source| DemoError::Listen { addr, source })
    }

    /// Stops the churn and the simulator.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.server.shutdown().await;
    }
}
