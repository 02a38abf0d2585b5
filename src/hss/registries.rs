//! One page of `GET /v5/{project_id}/image/registries`: the request (`limit` 200, `offset`
//! paging, the project's enterprise project) and its strict decoding. Paging and the rate
//! limit are the scheduler's.

use std::time::SystemTime;

use std::borrow::Cow;

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

/// A page as the API writes it: every field optional, unknown fields ignored, text
/// borrowed from the body where it has no escapes (a page is decoded without building a
/// tree of it first).
#[derive(serde::Deserialize)]
struct RawPage<'a> {
    #[serde(default)]
    total_num: Option<u64>,
    #[serde(default, borrow)]
    data_list: Option<Vec<RawRegistry<'a>>>,
}

#[derive(serde::Deserialize)]
struct RawRegistry<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    registry_name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    registry_type: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    registry_addr: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    connect_cluster_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    fail_reason: Option<Cow<'a, str>>,
    #[serde(default)]
    images_num: Option<u64>,
    #[serde(default)]
    latest_sync_time: Option<u64>,
}

/// Strict decoding of a page: every field may be absent (or null), but one that is present
/// must have its documented type. Anything else fails the whole page, naming the field.
pub fn decode_page(body: &[u8]) -> Result<Page, ApiError> {
    // serde would take a list for the struct too: only an object is a page.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let what = if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
            "body is not the expected JSON object"
        } else {
            "body is not JSON"
        };
        return Err(ApiError::Decode(what.into()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let raw: RawPage = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        ApiError::Decode(if path == "." || path.is_empty() {
            format!("body is not the expected JSON object: {inner}")
        } else {
            format!("{path}: {inner}")
        })
    })?;
    de.end()
        .map_err(|e| ApiError::Decode(format!("body is not JSON: {e}")))?;
    let text = |v: Option<Cow<'_, str>>| v.as_deref().map(sanitize_label).unwrap_or_default();
    let registries = raw
        .data_list
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            Ok(Registry {
                id: text(r.id),
                name: text(r.registry_name),
                registry_type: text(r.registry_type),
                addr: text(r.registry_addr),
                connect_cluster_id: text(r.connect_cluster_id),
                status: r.status.as_deref().and_then(RegistryStatus::parse),
                fail_reason: text(r.fail_reason),
                images_num: r.images_num,
                latest_sync_time_ms: match r.latest_sync_time {
                    None => None,
                    Some(t) => Some(i64::try_from(t).map_err(|_| {
                        ApiError::Decode(format!("latest_sync_time {t} is out of range"))
                    })?),
                },
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    Ok(Page {
        total_num: raw.total_num,
        registries,
    })
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
            (&b"<html>"[..], "body is not JSON"),
            (b"[]", "body is not the expected JSON object"),
            (br#"{"total_num": 1} trailing"#, "body is not JSON"),
            (
                br#"{"total_num": -1}"#,
                "total_num: invalid value: integer `-1`",
            ),
            (br#"{"total_num": "3"}"#, "total_num: invalid type: string"),
            (br#"{"data_list": {}}"#, "data_list: invalid type: map"),
            (
                br#"{"data_list": [1]}"#,
                "data_list[0]: invalid type: integer `1`",
            ),
            (
                br#"{"data_list": [{"id": 7}]}"#,
                "data_list[0].id: invalid type: integer `7`",
            ),
            (
                br#"{"data_list": [{"id": "a"}, {"images_num": -2}]}"#,
                "data_list[1].images_num: invalid value: integer `-2`",
            ),
            (
                br#"{"data_list": [{"latest_sync_time": "yesterday"}]}"#,
                "data_list[0].latest_sync_time: invalid type: string",
            ),
            (
                br#"{"data_list": [{"status": true}]}"#,
                "data_list[0].status: invalid type: boolean `true`",
            ),
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
        assert_eq!(req.url.as_str(), "https://hss.cn-north-4.myhuaweicloud.com/v5/0123456789abcdef0123456789abcdef/image/registries?enterprise_project_id=all_granted_eps&limit=200&offset=400");
        assert!(req
            .headers
            .iter()
            .any(|(k, v)| k == "X-Project-Id" && v == "0123456789abcdef0123456789abcdef"));
    }
}
