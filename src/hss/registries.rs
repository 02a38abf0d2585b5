//! One page of `GET /v5/{project_id}/image/registries`: the request (`limit` 200, `offset`
//! paging, the project's enterprise project) and its strict decoding. Paging and the rate
//! limit are the scheduler's.

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::auth::RequestAuth;
use super::client::{Exchange, HssClient};
use super::request::{build_get, SignedRequest};
use super::ApiError;
use crate::model::{sanitize_label, Listing, Registry, RegistryStatus};

/// Registries asked for per page: the most the API documents (10–200).
pub const PAGE_LIMIT: usize = 200;
/// Pages larger than this are refused unread; 200 registries are some 100 KB.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// One decoded page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// `total_num`: registries in the whole listing; `None` when the API left it out.
    pub total_num: Option<u64>,
    /// `data_list`, in the API's order.
    pub registries: Vec<Registry>,
}

/// The request for the page at `offset` of `listing`'s registries.
pub fn build_page_request(
    endpoint: &url::Url,
    listing: &Listing,
    offset: usize,
    auth: &RequestAuth,
    now: SystemTime,
) -> SignedRequest {
    let path = format!(
        "/v5/{}/image/registries",
        super::signer::encode(&listing.project_id)
    );
    let (offset, limit) = (offset.to_string(), PAGE_LIMIT.to_string());
    let mut pairs: Vec<(&str, &str)> = vec![("limit", &limit), ("offset", &offset)];
    if let Some(eps) = &listing.enterprise_project_id {
        pairs.push(("enterprise_project_id", eps));
    }
    build_get(
        endpoint,
        &path,
        &pairs,
        Some(&listing.project_id),
        auth,
        now,
    )
}

impl HssClient {
    /// Fetches the page at `offset` of `listing`'s registries with `auth`.
    pub async fn list_registries(
        &self,
        listing: &Listing,
        offset: usize,
        auth: &RequestAuth,
    ) -> Exchange<Page> {
        let request = build_page_request(self.endpoint(), listing, offset, auth, SystemTime::now());
        self.send(request, MAX_PAGE_BYTES, decode_page).await
    }
}

fn bad(msg: String) -> ApiError {
    ApiError::Decode(msg)
}

/// Strict decoding of a page: every field may be absent (or null), but one that is present
/// must have its documented type. Anything else fails the whole page.
pub fn decode_page(body: &[u8]) -> Result<Page, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| bad("body is not a JSON object".into()))?;
    let total_num = match object.get("total_num") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| bad(format!("total_num is {v}, not a non-negative integer")))?,
        ),
    };
    let items = match object.get("data_list") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(items)) => items.as_slice(),
        Some(v) => return Err(bad(format!("data_list is {}, not a list", short(v)))),
    };
    let registries = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("data_list[{i}]");
            let fields = item
                .as_object()
                .ok_or_else(|| bad(format!("{at} is {}, not an object", short(item))))?;
            registry(&at, fields)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        total_num,
        registries,
    })
}

fn registry(at: &str, fields: &Map<String, Value>) -> Result<Registry, ApiError> {
    let text = |name: &str| -> Result<String, ApiError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(sanitize_label(s)),
            Some(v) => Err(bad(format!("{at}.{name} is {}, not a string", short(v)))),
        }
    };
    let status = text("status")?;
    let images_num = match fields.get("images_num") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            bad(format!(
                "{at}.images_num is {}, not a non-negative integer",
                short(v)
            ))
        })?),
    };
    let latest_sync_time_ms = match fields.get("latest_sync_time") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().filter(|t| *t >= 0).ok_or_else(|| {
            bad(format!(
                "{at}.latest_sync_time is {}, not a time in milliseconds",
                short(v)
            ))
        })?),
    };
    Ok(Registry {
        id: text("id")?,
        name: text("registry_name")?,
        registry_type: text("registry_type")?,
        addr: text("registry_addr")?,
        connect_cluster_id: text("connect_cluster_id")?,
        status: RegistryStatus::parse(&status),
        fail_reason: text("fail_reason")?,
        images_num,
        latest_sync_time_ms,
    })
}

/// A JSON value for an error message, cut short.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    #[test]
    fn decodes_a_page_with_absent_fields_as_empty() {
        let page = decode_page(
            br#"{"total_num": 2, "data_list": [
                {"id": "r1", "registry_name": "harbor-a", "registry_type": "Harbor",
                 "registry_addr": "harbor.example.com", "connect_cluster_id": "c1",
                 "status": "fail", "fail_reason": "REQUEST_API_ERROR\n", "images_num": 12,
                 "latest_sync_time": 1764500000123, "api_version": "V2", "protocol": "https"},
                {"id": "r2", "status": "rebooting", "registry_name": null}
            ]}"#,
        )
        .unwrap();
        assert_eq!(page.total_num, Some(2));
        assert_eq!(
            page.registries[0],
            Registry {
                id: "r1".into(),
                name: "harbor-a".into(),
                registry_type: "Harbor".into(),
                addr: "harbor.example.com".into(),
                connect_cluster_id: "c1".into(),
                status: Some(RegistryStatus::Fail),
                fail_reason: "REQUEST_API_ERROR".into(),
                images_num: Some(12),
                latest_sync_time_ms: Some(1_764_500_000_123),
            }
        );
        assert_eq!(
            page.registries[1],
            Registry {
                id: "r2".into(),
                ..Registry::default()
            },
            "an unknown status is no state; absent fields are empty"
        );
        assert_eq!(
            decode_page(b"{}").unwrap(),
            Page {
                total_num: None,
                registries: vec![]
            }
        );
    }

    #[test]
    fn a_malformed_page_is_a_decode_error_naming_the_field() {
        for (body, wanted) in [
            (&b"<html>"[..], "not JSON"),
            (b"[]", "not a JSON object"),
            (br#"{"total_num": -1}"#, "total_num is -1"),
            (br#"{"total_num": "3"}"#, "total_num is \"3\""),
            (br#"{"data_list": {}}"#, "data_list is {}, not a list"),
            (br#"{"data_list": [1]}"#, "data_list[0] is 1, not an object"),
            (
                br#"{"data_list": [{"id": 7}]}"#,
                "data_list[0].id is 7, not a string",
            ),
            (
                br#"{"data_list": [{"id": "a"}, {"images_num": -2}]}"#,
                "data_list[1].images_num is -2",
            ),
            (
                br#"{"data_list": [{"latest_sync_time": "yesterday"}]}"#,
                "data_list[0].latest_sync_time is \"yesterday\"",
            ),
            (br#"{"data_list": [{"status": true}]}"#, "status is true"),
        ] {
            let err = decode_page(body).unwrap_err();
            assert_eq!(err.reason().as_str(), "decode");
            assert!(err.to_string().contains(wanted), "{err} lacks {wanted}");
        }
    }

    #[test]
    fn builds_the_page_request() {
        let endpoint = url::Url::parse("https://hss.cn-north-4.myhuaweicloud.com").unwrap();
        let listing = Listing {
            account: "a".into(),
            region: "cn-north-4".into(),
            project_id: "0123456789abcdef0123456789abcdef".into(),
            enterprise_project_id: Some("all_granted_eps".into()),
        };
        let auth = RequestAuth::Token(Secret::new("tok"));
        let req = build_page_request(&endpoint, &listing, 400, &auth, SystemTime::now());
        assert_eq!(req.url, "https://hss.cn-north-4.myhuaweicloud.com/v5/0123456789abcdef0123456789abcdef/image/registries?enterprise_project_id=all_granted_eps&limit=200&offset=400");
        assert!(req
            .headers
            .iter()
            .any(|(k, v)| k == "X-Project-Id" && v == "0123456789abcdef0123456789abcdef"));
    }
}
