//! IAM's project listing, `GET /v3/auth/projects`: the projects a credential can access. It
//! needs no permission, has no query and no paging. Requests are signed like HSS's (without
//! `X-Project-Id`) or carry a token; an IAM password buys a domain-scoped token.

use std::time::SystemTime;

use serde_json::Value;

use super::client::HssClient;
use super::request::build_get;
use super::ApiError;

/// Listings larger than this are refused unread: a few hundred projects are some 100 KB.
pub const MAX_PROJECTS_BYTES: usize = 4 * 1024 * 1024;

/// One project of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamProject {
    /// The project ID HSS calls take.
    pub id: String,
    /// The region ID for a region's project (`cn-north-4`), `{region}_{suffix}` for a
    /// sub-project, or something else (`MOS`, empty).
    pub name: String,
    /// Disabled projects are not polled; absent counts as enabled.
    pub enabled: bool,
}

/// The projects the credentials of `client` can access, listed at its endpoint (IAM's).
/// For an IAM password, a domain-scoped token is obtained first.
pub async fn list_projects(client: &HssClient) -> Result<Vec<IamProject>, ApiError> {
    if let Some(e) = client.broken() {
        return Err(e);
    }
    let auth = client.authenticator().for_domain().await?;
    // `https://iam.example/v3`, as a stack's own tools write it, is the same base.
    let mut base = client.endpoint().clone();
    let path = base.path().trim_end_matches('/');
    let trimmed = path.strip_suffix("/v3").unwrap_or(path).to_string();
    base.set_path(&trimmed);
    let request = build_get(
        &base,
        "/v3/auth/projects",
        &[],
        None,
        &auth,
        SystemTime::now(),
    );
    client
        .send(request, MAX_PROJECTS_BYTES, decode_projects)
        .await
        .result
}

/// Strict decoding: `projects` must be a list of objects whose fields have their types;
/// entries without an ID are left out.
pub fn decode_projects(body: &[u8]) -> Result<Vec<IamProject>, ApiError> {
    let bad = |m: String| ApiError::Decode(format!("IAM project list: {m}"));
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let Some(Value::Array(items)) = value.get("projects") else {
        return Err(bad("no projects list".into()));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = |name: &str| match item.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(bad(format!("projects[{i}].{name} is {v}, not a string"))),
        };
        if !item.is_object() {
            return Err(bad(format!("projects[{i}] is not an object")));
        }
        let enabled = match item.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(bad(format!("projects[{i}].enabled is {v}, not a boolean"))),
        };
        let (id, name) = (text("id")?, text("name")?);
        if !id.is_empty() {
            out.push(IamProject { id, name, enabled });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_project_list() {
        let projects = decode_projects(
            br#"{"projects": [
                {"id": "p1", "name": "cn-north-4", "enabled": true, "is_domain": false, "links": {}},
                {"id": "p2", "name": "MOS", "enabled": true},
                {"id": "p3", "name": "cn-north-4_dev", "enabled": false},
                {"id": "p4", "name": ""},
                {"name": "no-id"}
            ], "links": {"self": "x"}}"#,
        )
        .unwrap();
        let summary: Vec<(&str, &str, bool)> = projects
            .iter()
            .map(|p| (p.id.as_str(), p.name.as_str(), p.enabled))
            .collect();
        assert_eq!(
            summary,
            [
                ("p1", "cn-north-4", true),
                ("p2", "MOS", true),
                ("p3", "cn-north-4_dev", false),
                ("p4", "", true)
            ]
        );
        for (body, wanted) in [
            (&b"{}"[..], "no projects list"),
            (br#"{"projects": [1]}"#, "projects[0] is not an object"),
            (br#"{"projects": [{"id": 3}]}"#, "projects[0].id is 3"),
            (
                br#"{"projects": [{"enabled": "yes"}]}"#,
                "projects[0].enabled is \"yes\"",
            ),
        ] {
            let err = decode_projects(body).unwrap_err();
            assert_eq!(err.reason().as_str(), "decode");
            assert!(err.to_string().contains(wanted), "{err} lacks {wanted}");
        }
    }
}
