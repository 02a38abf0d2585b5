//! What the API gateway checks before a request reaches HSS: a token, or an AK/SK signature
//! with its date, signed headers and project, exactly as the official SDK signs.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::State;
use crate::hss::signer;

/// The gateway refuses an `X-Sdk-Date` further than this from its clock.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// Who is calling, or why not: checks a token, or an AK/SK signature as the gateway does.
pub(super) fn authenticate(
    s: &State,
    parts: &http::request::Parts,
    body: &[u8],
    project: &str,
    query: &[(String, String)],
) -> Result<String, (String, String)> {
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(token) = header("X-Auth-Token") {
        if let Some(owner) = s.static_tokens.get(token) {
            return Ok(owner.clone());
        }
        return match s.issued.get(token) {
            None => Err((String::new(), "token is not valid".into())),
            Some(t) if Instant::now() >= t.expires => {
                Err((t.caller.clone(), "token has expired".into()))
            }
            Some(t) if t.project_id != project => Err((
                t.caller.clone(),
                "token is scoped to another project".into(),
            )),
            Some(t) => Ok(t.caller.clone()),
        };
    }
    let Some(authorization) = header("Authorization") else {
        return Err((
            String::new(),
            "no X-Auth-Token and no Authorization header".into(),
        ));
    };
    let fields = authorization
        .strip_prefix(signer::ALGORITHM)
        .map(|rest| {
            rest.split(',')
                .filter_map(|f| f.trim().split_once('='))
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default();
    let (Some(ak), Some(signed), Some(given)) = (
        fields.get("Access"),
        fields.get("SignedHeaders"),
        fields.get("Signature"),
    ) else {
        return Err((String::new(), "malformed Authorization header".into()));
    };
    let mut caller = ak.to_string();
    let names: Vec<&str> = signed.split(';').collect();
    let temporary = s.temporary_key(ak, &names, header("X-Security-Token"));
    let sk = match (&temporary, s.access_keys.get(*ak)) {
        // Every temporary key of the agency is the agency's user to the gateway.
        (Some(Ok(sk)), _) => {
            caller = super::AGENCY_CALLER.to_string();
            sk
        }
        (Some(Err(why)), _) => return Err((super::AGENCY_CALLER.to_string(), why.clone())),
        (None, Some(sk)) => sk,
        (None, None) => return Err((caller, "unknown access key".into())),
    };
    let Some(date) = header("X-Sdk-Date") else {
        return Err((caller, "X-Sdk-Date is missing".into()));
    };
    let skew_ok = signer::parse_sdk_date(date).is_some_and(|t| {
        let now = SystemTime::now();
        let diff = now
            .duration_since(t)
            .or_else(|_| t.duration_since(now))
            .unwrap_or_default();
        diff <= MAX_CLOCK_SKEW
    });
    if !skew_ok {
        return Err((
            caller,
            "X-Sdk-Date is malformed or more than 15 minutes off".into(),
        ));
    }
    if !names.contains(&"host") || !names.contains(&"x-sdk-date") {
        return Err((caller, "host and x-sdk-date must be signed".into()));
    }
    let mut headers = Vec::new();
    for name in &names {
        match header(name) {
            Some(v) => headers.push((*name, v)),
            None => return Err((caller, format!("signed header {name} is missing"))),
        }
    }
    if header("X-Project-Id").is_some_and(|p| p != project) {
        return Err((
            caller,
            "X-Project-Id does not match the project in the path".into(),
        ));
    }
    let canonical_query = signer::canonical_query(query);
    let expected = signer::sign(
        parts.method.as_str(),
        parts.uri.path(),
        &canonical_query,
        &headers,
        body,
        date,
        sk,
    );
    if bool::from(expected.signature.as_bytes().ct_eq(given.as_bytes())) {
        Ok(caller)
    } else {
        Err((caller, "signature does not match".into()))
    }
}
