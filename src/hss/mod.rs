//! Everything about the HSS API: building and signing a request, authenticating it, sending
//! it and decoding its answer strictly. Pacing and retries are the scheduler's.

pub mod auth;
pub mod client;
mod error;
pub mod iam;
mod metadata;
pub mod registries;
pub mod request;
pub mod signer;
pub mod transport;

pub use client::{http_client, HssClient};
pub use error::ApiError;
pub use registries::{Page, MAX_PAGE_BYTES, PAGE_LIMIT};
pub use transport::HttpClients;
