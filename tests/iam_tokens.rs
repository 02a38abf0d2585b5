//! The IAM token cache of `iam_password` accounts, against the simulated IAM: one token per
//! project, reused until an hour before it expires, forgotten when refused, fetched once
//! for callers that wait together, and used for a minute at least when the host clock is
//! ahead of IAM's.

mod common;

use std::time::Duration;

use hss_exporter::hss::auth::{Authenticator, RequestAuth};
use hss_exporter::model::Credentials;
use hss_exporter::secret::Secret;
use hss_exporter::sim::{Service, Sim, SimServer};

async fn iam(password: &str, lifetime: Duration) -> (Sim, SimServer, Authenticator) {
    let sim = Sim::new();
    sim.add_user("acme", "ops", "pw");
    sim.set_token_lifetime(lifetime);
    let server = sim.start(([127, 0, 0, 1], 0).into()).await.unwrap();
    let credentials = Credentials::IamPassword {
        domain: "acme".into(),
        user: "ops".into(),
        password: Secret::new(password),
        iam_endpoint: url::Url::parse(&server.url()).unwrap(),
    };
    let auth = Authenticator::new(&credentials, common::http(), Duration::from_secs(5));
    (sim, server, auth)
}

/// Tokens IAM issued for `project`.
fn fetched(sim: &Sim, project: &str) -> usize {
    sim.log()
        .iter()
        .filter(|e| e.service == Service::Iam && e.project_id == project && e.status == 201)
        .count()
}

async fn token(auth: &Authenticator, project: &str) -> Secret {
    match auth.for_project(project).await.unwrap() {
        RequestAuth::Token(t) => t,
        RequestAuth::Sign { .. } => panic!("an IAM user's requests carry a token"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_per_project_is_reused_until_an_hour_before_it_expires() {
    let (sim, _server, auth) = iam("pw", Duration::from_secs(24 * 3600)).await;
    assert!(auth.can_refresh());
    let first = token(&auth, "p1").await;
    assert_eq!(token(&auth, "p1").await, first);
    let other = token(&auth, "p2").await;
    assert_ne!(other, first, "one token per project scope");
    assert_eq!((fetched(&sim, "p1"), fetched(&sim, "p2")), (1, 1));
    tokio::time::advance(Duration::from_secs(23 * 3600 - 10)).await;
    assert_eq!(token(&auth, "p1").await, first);
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_ne!(token(&auth, "p1").await, first, "renewed an hour early");
    assert_eq!(fetched(&sim, "p1"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refused_token_is_forgotten_but_not_its_successor() {
    let (sim, _server, auth) = iam("pw", Duration::from_secs(24 * 3600)).await;
    let old = token(&auth, "p1").await;
    auth.refused("p1", &RequestAuth::Token(old.clone())).await;
    let new = token(&auth, "p1").await;
    assert_ne!(new, old);
    // A second refusal of the old token (a request that was under way) keeps the new one.
    auth.refused("p1", &RequestAuth::Token(old)).await;
    assert_eq!(token(&auth, "p1").await, new);
    assert_eq!(fetched(&sim, "p1"), 2);
}

#[tokio::test(start_paused = true)]
async fn callers_waiting_for_one_scope_share_one_fetch() {
    let (sim, _server, auth) = iam("pw", Duration::from_secs(24 * 3600)).await;
    let (a, b, c) = tokio::join!(token(&auth, "p1"), token(&auth, "p1"), token(&auth, "p1"));
    assert!(a == b && b == c);
    assert_eq!(fetched(&sim, "p1"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_token_that_looks_expired_is_still_used_for_a_minute() {
    // The host clock is ahead of IAM's: every token looks expired on arrival.
    let (sim, _server, auth) = iam("pw", Duration::ZERO).await;
    let first = token(&auth, "p1").await;
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(token(&auth, "p1").await, first);
    }
    tokio::time::advance(Duration::from_secs(11)).await;
    assert_ne!(token(&auth, "p1").await, first);
    assert_eq!(fetched(&sim, "p1"), 2, "one fetch a minute, not one a poll");
}

#[tokio::test]
async fn a_wrong_password_is_an_auth_error_naming_iam() {
    let (sim, _server, auth) = iam("nope", Duration::from_secs(3600)).await;
    let err = auth.for_project("p1").await.unwrap_err();
    assert_eq!(err.reason().as_str(), "auth");
    assert!(err.to_string().contains("password is wrong"), "{err}");
    assert_eq!(fetched(&sim, "p1"), 0);
}
