//! hss-exporter: polls Huawei Cloud HSS image-registry access statistics and serves them to
//! Prometheus. Data flows one way: config → scheduler → hss client → metrics store → web.
//!
//! - [`model`]: the shared vocabulary (targets, credentials, answers, failure reasons).
//! - [`config`]: the file, its overrides and its validation into [`config::Settings`].
//! - [`scheduler`]: pacing within the rate limits, back-off and suspension.
//! - [`hss`]: building, signing, authenticating and decoding API calls.
//! - [`metrics`]: the store behind `/metrics` and the status page.
//! - [`web`]: the HTTP endpoints, on the neutral accept loop of [`server`].
//! - [`app`], [`reload`], [`shutdown`], [`telemetry`], [`cli`]: wiring the process;
//!   [`memory`]: handing freed memory back to the system.
//! - [`sim`], [`demo`]: the simulated API and the demo scenario.
#![deny(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod hss;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod reload;
pub mod scheduler;
pub mod secret;
pub mod server;
pub mod shutdown;
pub mod sim;
pub mod telemetry;
pub mod web;
pub mod yaml;

pub use app::Exporter;
