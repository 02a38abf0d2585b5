//! An account's `auth:` into [`Credentials`], reading each secret from its variable or file.

use std::path::PathBuf;

use url::Url;

use super::file::AuthSection;
use super::{validate, Env};
use crate::model::DEFAULT_METADATA_ENDPOINT;
use crate::model::{default_iam_endpoint, stack_iam_endpoint, Credentials};
use crate::secret::Secret;

/// Resolves the one way of authenticating `auth` names; `None` (with the problems pushed
/// to `errors`) when it is not exactly one or a secret cannot be read.
pub(super) fn validate_auth(
    at: &str,
    auth: &AuthSection,
    region: &str,
    cloud: Option<&str>,
    env: &Env,
    errors: &mut Vec<String>,
) -> Option<Credentials> {
    let given: Vec<&str> = [
        auth.ak_sk.as_ref().map(|_| "ak_sk"),
        auth.token.as_ref().map(|_| "token"),
        auth.iam_password.as_ref().map(|_| "iam_password"),
        auth.metadata.as_ref().map(|_| "metadata"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() != 1 {
        errors.push(format!(
            "{at}: exactly one of ak_sk, token, iam_password, metadata is required (found {})",
            if given.is_empty() {
                "none".to_string()
            } else {
                given.join(", ")
            }
        ));
        return None;
    }
    if let Some(s) = &auth.ak_sk {
        let at = format!("{at}.ak_sk");
        let access_key = secret(
            &at,
            "access_key",
            s.access_key_env.as_ref(),
            s.access_key_file.as_ref(),
            env,
            errors,
        );
        let secret_key = secret(
            &at,
            "secret_key",
            s.secret_key_env.as_ref(),
            s.secret_key_file.as_ref(),
            env,
            errors,
        );
        let security_token = if s.security_token_env.is_some() || s.security_token_file.is_some() {
            Some(secret(
                &at,
                "security_token",
                s.security_token_env.as_ref(),
                s.security_token_file.as_ref(),
                env,
                errors,
            )?)
        } else {
            None
        };
        return Some(Credentials::AkSk {
            access_key: access_key?,
            secret_key: secret_key?,
            security_token,
        });
    }
    if let Some(t) = &auth.token {
        let token = secret(
            &format!("{at}.token"),
            "token",
            t.token_env.as_ref(),
            t.token_file.as_ref(),
            env,
            errors,
        )?;
        return Some(Credentials::Token(token));
    }
    if let Some(m) = &auth.metadata {
        let endpoint = match &m.endpoint {
            Some(e) => validate::parse_endpoint(&format!("{at}.metadata.endpoint"), e, errors),
            None => Url::parse(DEFAULT_METADATA_ENDPOINT).ok(),
        };
        return Some(Credentials::Metadata {
            endpoint: endpoint?,
        });
    }
    let p = auth.iam_password.as_ref()?;
    let at = format!("{at}.iam_password");
    for (key, value) in [("domain", &p.domain), ("user", &p.user)] {
        if value.trim().is_empty() {
            errors.push(format!("{at}.{key}: must not be empty"));
        }
    }
    let password = secret(
        &at,
        "password",
        p.password_env.as_ref(),
        p.password_file.as_ref(),
        env,
        errors,
    );
    let iam_endpoint = match &p.iam_endpoint {
        Some(e) => validate::parse_endpoint(&format!("{at}.iam_endpoint"), e, errors),
        None => match cloud {
            Some(cloud) => Url::parse(&stack_iam_endpoint(cloud)).ok(),
            None => Url::parse(&default_iam_endpoint(region)).ok(),
        },
    };
    Some(Credentials::IamPassword {
        domain: p.domain.clone(),
        user: p.user.clone(),
        password: password?,
        iam_endpoint: iam_endpoint?,
    })
}

/// Resolves a secret named by exactly one of `{name}_env` / `{name}_file`.
pub(super) fn secret(
    at: &str,
    name: &str,
    from_env: Option<&String>,
    from_file: Option<&PathBuf>,
    env: &Env,
    errors: &mut Vec<String>,
) -> Option<Secret> {
    let value = match (from_env, from_file) {
        (Some(var), None) => {
            if let Some(v) = env.get(var) {
                v.clone()
            } else {
                errors.push(format!(
                    "{at}.{name}_env: environment variable {var:?} is not set"
                ));
                return None;
            }
        }
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(v) => v,
            Err(e) => {
                errors.push(format!(
                    "{at}.{name}_file: cannot read {:?}: {e}",
                    path.display().to_string()
                ));
                return None;
            }
        },
        (Some(_), Some(_)) => {
            errors.push(format!("{at}: set only one of {name}_env, {name}_file"));
            return None;
        }
        (None, None) => {
            errors.push(format!("{at}: one of {name}_env, {name}_file is required"));
            return None;
        }
    };
    // Files written by editors and `echo` end in a newline that is not part of the secret.
    let value = value.trim_end_matches(['\n', '\r']);
    if value.trim().is_empty() {
        errors.push(match (from_env, from_file) {
            (Some(var), _) => format!("{at}.{name}_env: environment variable {var:?} is empty"),
            (_, path) => format!(
                "{at}.{name}_file: {:?} is empty",
                path.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
        });
        return None;
    }
    Some(Secret::new(value))
}
