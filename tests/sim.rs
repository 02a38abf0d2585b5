//! The simulated API refuses what the real gateway refuses, so that the other tests prove
//! something: tampered or stale signatures, unknown keys, wrong tokens, too many calls.

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use hss_exporter::hss::auth::RequestAuth;
use hss_exporter::hss::request::build_request;
use hss_exporter::model::RegistryType::{self, *};
use hss_exporter::model::Target;
use hss_exporter::secret::Secret;
use http::header::HeaderName;
use url::Url;

fn target(project: &str, t: Option<RegistryType>) -> Target {
    Target {
        account: "a".into(),
        region: "cn-north-4".into(),
        project_id: project.into(),
        enterprise_project_id: None,
        registry_type: t,
    }
}

fn signed(ak: &str, sk: &str) -> RequestAuth {
    RequestAuth::Sign {
        access_key: Secret::new(ak),
        secret_key: Secret::new(sk),
        security_token: None,
    }
}

/// Changes a built request's URL or headers before it is sent.
type Tamper = Box<dyn FnOnce(&mut Url, &mut Vec<(HeaderName, String)>)>;

/// Sends a built request, letting `tamper` change the URL or headers first.
async fn send(
    base: &str,
    t: &Target,
    auth: &RequestAuth,
    at: SystemTime,
    tamper: impl FnOnce(&mut Url, &mut Vec<(HeaderName, String)>),
) -> (u16, serde_json::Value) {
    let mut req = build_request(&Url::parse(base).unwrap(), t, auth, at);
    tamper(&mut req.url, &mut req.headers);
    let mut b = http().get(req.url.clone());
    for (k, v) in &req.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let r = b.send().await.unwrap();
    let status = r.status().as_u16();
    (
        status,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or_default(),
    )
}

#[tokio::test]
async fn verifies_signatures_like_the_gateway() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 1, 2);
    let url = server.url();
    let now = SystemTime::now();
    let t = target(P1, Some(Harbor));
    let ok = signed(AK, SK);

    let (status, body) = send(&url, &t, &ok, now, |_, _| {}).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({"fail_num": 1, "success_num": 2}))
    );

    let cases: Vec<(&str, Tamper, RequestAuth, SystemTime, &str)> = vec![
        (
            "wrong secret key",
            Box::new(|_, _| {}),
            signed(AK, "wrong"),
            now,
            "signature does not match",
        ),
        (
            "unknown access key",
            Box::new(|_, _| {}),
            signed("NOSUCHAK", SK),
            now,
            "unknown access key",
        ),
        (
            "query changed after signing",
            Box::new(|u, _| *u = Url::parse(&u.as_str().replace("Harbor", "Jfrog")).unwrap()),
            ok.clone(),
            now,
            "signature does not match",
        ),
        (
            "signed header changed",
            Box::new(|_, h| {
                h.iter_mut()
                    .filter(|(k, _)| k == "User-Agent")
                    .for_each(|(_, v)| *v = "curl".into());
            }),
            ok.clone(),
            now,
            "signature does not match",
        ),
        (
            "date 16 minutes old",
            Box::new(|_, _| {}),
            ok.clone(),
            now - Duration::from_secs(16 * 60),
            "more than 15 minutes off",
        ),
        (
            "project header mismatch",
            Box::new(|_, h| {
                h.iter_mut()
                    .filter(|(k, _)| k == "X-Project-Id")
                    .for_each(|(_, v)| *v = P2.into());
            }),
            ok.clone(),
            now,
            "X-Project-Id does not match the project in the path",
        ),
        (
            "no credentials",
            Box::new(|_, h| h.retain(|(k, _)| k != "Authorization")),
            ok.clone(),
            now,
            "no X-Auth-Token and no Authorization header",
        ),
    ];
    for (name, tamper, auth, at, wanted) in cases {
        let (status, body) = send(&url, &t, &auth, at, tamper).await;
        assert_eq!(status, 401, "{name}");
        assert_eq!(body["error_code"], "APIGW.0301", "{name}");
        let msg = body["error_msg"].as_str().unwrap();
        assert!(msg.contains(wanted), "{name}: {msg}");
        assert!(body["request_id"].as_str().unwrap().starts_with("sim-"));
    }
    let (status, _) = send(
        &url,
        &t,
        &RequestAuth::Token(Secret::new("static-token-1")),
        now,
        |_, _| {},
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = send(
        &url,
        &t,
        &RequestAuth::Token(Secret::new("forged")),
        now,
        |_, _| {},
    )
    .await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (401, Some("APIGW.0301"))
    );
}

#[tokio::test]
async fn sums_types_and_enterprise_projects_like_the_api() {
    let (sim, server) = sim().await;
    sim.set_stats(P1, None, Harbor, 1, 2);
    sim.set_stats(P1, None, Jfrog, 3, 4);
    sim.set_stats(P1, Some("ep-x"), Jfrog, 10, 10);
    let url = server.url();
    let ok = signed(AK, SK);
    let now = SystemTime::now();
    let mut all = target(P1, None);
    assert_eq!(
        send(&url, &all, &ok, now, |_, _| {}).await.1,
        serde_json::json!({"fail_num": 4, "success_num": 6})
    );
    all.enterprise_project_id = Some("all_granted_eps".into());
    assert_eq!(
        send(&url, &all, &ok, now, |_, _| {}).await.1,
        serde_json::json!({"fail_num": 14, "success_num": 16})
    );
    let t = target(P1, Some(Harbor));
    let comma = |u: &mut Url, _: &mut Vec<(HeaderName, String)>| {
        *u = Url::parse(
            &u.as_str()
                .replace("registry_type=Harbor", "registry_type=Harbor%2CJfrog"),
        )
        .unwrap();
    };
    // The URL change invalidates the signature, so use a token here.
    let tok = RequestAuth::Token(Secret::new("static-token-1"));
    assert_eq!(
        send(&url, &t, &tok, now, comma).await.1,
        serde_json::json!({"fail_num": 4, "success_num": 6})
    );
    let bad = |u: &mut Url, _: &mut Vec<(HeaderName, String)>| {
        *u = Url::parse(
            &u.as_str()
                .replace("registry_type=Harbor", "registry_type=Nexus"),
        )
        .unwrap();
    };
    let (status, body) = send(&url, &t, &tok, now, bad).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("HSS.1002"))
    );
}

#[tokio::test]
async fn throttles_each_caller_past_its_limit() {
    let (sim, server) = sim().await;
    sim.set_rate_limit(Some(3));
    let url = server.url();
    let t = target(P1, None);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            send(&url, &t, &signed(AK, SK), SystemTime::now(), |_, _| {})
                .await
                .0,
        );
    }
    assert_eq!(statuses, vec![200, 200, 200, 429]);
    let (_, body) = send(&url, &t, &signed(AK, SK), SystemTime::now(), |_, _| {}).await;
    assert_eq!(body["error_code"], "APIGW.0308");
    assert!(body["error_msg"]
        .as_str()
        .unwrap()
        .contains("limit:3,time:1 minute"));
    // Another caller has its own budget.
    let (status, _) = send(
        &url,
        &t,
        &RequestAuth::Token(Secret::new("static-token-1")),
        SystemTime::now(),
        |_, _| {},
    )
    .await;
    assert_eq!(status, 200);
}
