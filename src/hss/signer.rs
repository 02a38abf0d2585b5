//! SDK-HMAC-SHA256 request signing, byte for byte as Huawei Cloud's official SDK signer does it.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// The signing algorithm's name, first in `Authorization` and the string to sign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// Lower-hex SHA-256 of the empty body, the payload hash of every GET.
pub const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What the SDK's `urlencode` leaves as it is: `A-Z a-z 0-9 - _ . ~`; everything else is
/// percent-encoded with upper-case hex.
const SDK_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes as the SDK's `urlencode` does (see [`SDK_ENCODE`]).
pub fn encode(s: &str) -> String {
    encoded(s).into_owned()
}

/// [`encode`], borrowing `s` when nothing in it needs encoding: every poll encodes its
/// path and query, which rarely hold anything to escape.
fn encoded(s: &str) -> Cow<'_, str> {
    utf8_percent_encode(s, SDK_ENCODE).into()
}

/// Decodes `%XX` escapes; a malformed escape is kept literally, as Python's `unquote` does.
pub fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The canonical URI: each decoded path segment re-encoded, always ending in `/`.
pub fn canonical_uri(path: &str) -> String {
    let mut uri = String::with_capacity(path.len() + 1);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            uri.push('/');
        }
        uri.push_str(&encoded(&percent_decode_str(segment).decode_utf8_lossy()));
    }
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The canonical query string, sorted by key then value; also the exact query the request sends.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut pairs: Vec<(Cow<str>, Cow<str>)> = pairs
        .iter()
        .map(|(k, v)| (encoded(k.as_ref()), encoded(v.as_ref())))
        .collect();
    pairs.sort();
    let mut query = String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            query.push('&');
        }
        query.push_str(k);
        query.push('=');
        query.push_str(v);
    }
    query
}

/// Everything that goes into one signature; the intermediate strings are kept for tests
/// and for the simulator's diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Method, URI, query, headers, signed header names and payload hash.
    pub canonical_request: String,
    /// The signed header names, lower case, sorted, `;`-joined.
    pub signed_headers: String,
    /// Algorithm, date and the hash of the canonical request.
    pub string_to_sign: String,
    /// Lower-hex HMAC-SHA256.
    pub signature: String,
}

impl Signature {
    /// The `Authorization` header's value for `access_key`.
    pub fn authorization(&self, access_key: &str) -> String {
        format!(
            "{ALGORITHM} Access={access_key}, SignedHeaders={}, Signature={}",
            self.signed_headers, self.signature
        )
    }
}

/// Signs a request. `headers` are all headers sent (name, value); names holding `_` are not
/// signed, as in the SDK. `sdk_date` must equal the `X-Sdk-Date` header sent.
pub fn sign(
    method: &str,
    path: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    sdk_date: &str,
    secret_key: &str,
) -> Signature {
    let mut signed: Vec<(Cow<str>, &str)> = headers
        .iter()
        .filter(|(name, _)| !name.contains('_'))
        .map(|(name, value)| (lowercase(name), value.trim()))
        .collect();
    signed.sort_by(|a, b| a.0.cmp(&b.0));
    // Built in place, at about their final size: every poll signs a request, and the
    // reallocations of strings grown piece by piece showed in its profile.
    let mut signed_headers = String::with_capacity(96);
    for (name, _) in &signed {
        if !signed_headers.is_empty() {
            signed_headers.push(';');
        }
        signed_headers.push_str(name);
    }
    let uri = canonical_uri(path);
    let mut canonical_request = String::with_capacity(
        method.len()
            + uri.len()
            + query.len()
            + signed
                .iter()
                .map(|(name, value)| name.len() + value.len() + 2)
                .sum::<usize>()
            + signed_headers.len()
            + 64
            + 5,
    );
    for part in [method, "\n", &uri, "\n", query, "\n"] {
        canonical_request.push_str(part);
    }
    for (name, value) in &signed {
        for part in [name, ":", value, "\n"] {
            canonical_request.push_str(part);
        }
    }
    canonical_request.push('\n');
    canonical_request.push_str(&signed_headers);
    canonical_request.push('\n');
    if body.is_empty() {
        canonical_request.push_str(EMPTY_PAYLOAD_SHA256);
    } else {
        push_hex(&Sha256::digest(body), &mut canonical_request);
    }
    let mut string_to_sign = String::with_capacity(ALGORITHM.len() + sdk_date.len() + 66);
    for part in [ALGORITHM, "\n", sdk_date, "\n"] {
        string_to_sign.push_str(part);
    }
    push_hex(
        &Sha256::digest(canonical_request.as_bytes()),
        &mut string_to_sign,
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    Signature {
        canonical_request,
        signed_headers,
        string_to_sign,
        signature: hex::encode(mac.finalize().into_bytes()),
    }
}

/// A header name in lower case, borrowed when it already is (as `http`'s names are).
fn lowercase(name: &str) -> Cow<'_, str> {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Appends the lower-hex form of `bytes`.
fn push_hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

/// `X-Sdk-Date` for a moment: `YYYYMMDDTHHMMSSZ`, UTC.
pub fn sdk_date(at: std::time::SystemTime) -> String {
    /// Writes what it is given without the separators of RFC 3339.
    struct Compact(String);
    impl std::fmt::Write for Compact {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0.extend(s.chars().filter(|c| !matches!(c, '-' | ':')));
            Ok(())
        }
    }
    /// 9999-12-31T23:59:59Z, the last moment the format can write.
    const LAST: u64 = 253_402_300_799;
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(LAST);
    let mut date = Compact(String::with_capacity(16));
    // 2026-11-27T12:00:00Z
    let rfc = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs),
    );
    let _ = std::fmt::Write::write_fmt(&mut date, format_args!("{rfc}"));
    date.0
}

/// Parses an `X-Sdk-Date` back into a moment; `None` when malformed.
pub fn parse_sdk_date(value: &str) -> Option<std::time::SystemTime> {
    let b = value.as_bytes();
    if !value.is_ascii() || b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &value[0..4],
        &value[4..6],
        &value[6..8],
        &value[9..11],
        &value[11..13],
        &value[13..15]
    );
    humantime::parse_rfc3339(&rfc).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../../tests/fixtures/signing.json")).unwrap()
    }

    fn check(v: &Value, ak: &str, sk: &str) {
        let name = v["name"].as_str().unwrap();
        let pairs: Vec<(String, String)> = v["input_query"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let query = canonical_query(&pairs);
        assert_eq!(query, v["query_string"], "{name}: query string");
        let headers: Vec<(&str, &str)> = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.as_str() != "Authorization")
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let date = headers.iter().find(|(k, _)| *k == "X-Sdk-Date").unwrap().1;
        let path = v["path"].as_str().unwrap();
        let sig = sign("GET", path, &query, &headers, b"", date, sk);
        assert_eq!(
            sig.canonical_request, v["canonical_request"],
            "{name}: canonical request"
        );
        assert_eq!(
            sig.signed_headers, v["signed_headers"],
            "{name}: signed headers"
        );
        assert_eq!(
            sig.string_to_sign, v["string_to_sign"],
            "{name}: string to sign"
        );
        assert_eq!(
            sig.authorization(ak),
            v["authorization"],
            "{name}: authorization"
        );
        let url = format!(
            "https://{}{}{}{}",
            v["host"].as_str().unwrap(),
            path,
            if query.is_empty() { "" } else { "?" },
            query
        );
        assert_eq!(url, v["url"], "{name}: url sent");
    }

    #[test]
    fn reproduces_every_sdk_vector() {
        let all = vectors();
        let (ak, sk) = (all["ak"].as_str().unwrap(), all["sk"].as_str().unwrap());
        let mut n = 0;
        for set in ["sdk_client_pipeline", "signer_direct"] {
            for v in all[set].as_array().unwrap() {
                check(v, ak, sk);
                n += 1;
            }
        }
        assert_eq!(n, 12);
        let doc = &all["official_doc_example"];
        check(
            doc,
            doc["ak"].as_str().unwrap(),
            doc["sk"].as_str().unwrap(),
        );
        assert_eq!(all["empty_payload_sha256"], EMPTY_PAYLOAD_SHA256);
    }

    #[test]
    fn encoding_matches_the_sdk() {
        assert_eq!(encode("a,b c+d~e*f/ü"), "a%2Cb%20c%2Bd~e%2Af%2F%C3%BC");
        assert_eq!(decode("a%2Cb%zz%4"), "a,b%zz%4");
        assert_eq!(
            decode("%+1%-f%2"),
            "%+1%-f%2",
            "malformed escapes stay as they are"
        );
        assert_eq!(canonical_uri("/v5/p%20x/stats"), "/v5/p%20x/stats/");
        assert_eq!(canonical_uri("/"), "/");
    }

    #[test]
    fn sdk_date_round_trips() {
        let t = humantime::parse_rfc3339("2026-11-27T12:00:00Z").unwrap();
        assert_eq!(sdk_date(t), "20261127T120000Z");
        assert_eq!(parse_sdk_date("20261127T120000Z"), Some(t));
        assert_eq!(parse_sdk_date("2026-11-27"), None);
        assert_eq!(parse_sdk_date("20261327T120000Z"), None);
        let far = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::MAX / 4);
        assert_eq!(sdk_date(far), "99991231T235959Z");
    }
}
