//! hss-exporter: polls Huawei Cloud HSS image-registry access statistics and serves them to
//! Prometheus. Data flows config → scheduler → hss client → metrics store → web.
#![forbid(unsafe_code)]

pub mod app;
pub mod config;
pub mod demo;
pub mod hss;
pub mod metrics;
pub mod scheduler;
pub mod secret;
pub mod sim;
pub mod web;

pub use app::Exporter;
