//! Property tests of the three parsers of outside input: the config loader, the decoder of
//! the API's answer and the signer's encoding. Each property states what must hold for every
//! input, not only that nothing panics. `PROPTEST_CASES=n` runs every property `n` times.
//!

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hss_exporter::config::{self, ConfigError, Env, Settings};
use hss_exporter::hss::auth::RequestAuth;
use hss_exporter::hss::client::decode_statistics;
use hss_exporter::hss::request::build_request;
use hss_exporter::hss::signer;
use hss_exporter::model;
use hss_exporter::model::{Credentials, ListenAddress};
use hss_exporter::model::{RegistryType, Statistics};
use hss_exporter::scheduler;
use hss_exporter::secret::Secret;
use hss_exporter::sim::Sim;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use url::Url;

/// `select` over a fixed list.
fn one_of<T: Clone + std::fmt::Debug + 'static>(
    items: &'static [T],
) -> proptest::sample::Select<T> {
    select(items)
}

/// `n` cases unless `PROPTEST_CASES` says otherwise; failures are reported, never saved.
fn cases(n: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A YAML (and JSON) double-quoted scalar holding exactly `s`.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Only unreserved characters and `%XX` escapes in upper-case hex.
fn is_percent_encoded(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |c: u8| c.is_ascii_digit() || (b'A'..=b'F').contains(&c);
            if i + 2 >= b.len() || !(hex(b[i + 1]) && hex(b[i + 2])) {
                return false;
            }
            i += 3;
        } else if is_unreserved(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

// ---------------------------------------------------------------------------------------
// The signer's encoding
// ---------------------------------------------------------------------------------------

/// Text made of pieces that trouble a percent-decoder: stray and partial escapes, escapes of
/// bytes that are not UTF-8, multibyte characters, separators.
fn escape_soup() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        one_of(&[
            "%", "%2", "%2F", "%2f", "%25", "%zz", "%C3", "%A9", "%C3%A9", "%FF", "%E2%82", "%00",
            "%+1", "%-1", "% 1", "/", "//", "?", "#", "&", "=", "+", " ", "a", "Z", "0", "~", "é",
            "€", "🦀", "\u{0}", "\n",
        ])
        .prop_map(str::to_string),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// `%XX` of every byte, in upper or lower case hex as `lower` says.
fn escape_all(bytes: &[u8], lower: &[bool]) -> String {
    let mut out = String::new();
    for (i, b) in bytes.iter().enumerate() {
        if lower.get(i).copied().unwrap_or(false) {
            write!(out, "%{b:02x}").unwrap();
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn encode_is_reversible_and_only_emits_unreserved_or_upper_hex(s in any::<String>()) {
        let e = signer::encode(&s);
        prop_assert!(is_percent_encoded(&e), "{e:?}");
        prop_assert_eq!(signer::decode(&e), s.clone());
        let unreserved = s.bytes().filter(|b| is_unreserved(*b)).count();
        prop_assert_eq!(e.len(), unreserved + 3 * (s.len() - unreserved));
        if s.bytes().all(is_unreserved) {
            prop_assert_eq!(e, s);
        }
    }

    #[test]
    fn decode_reads_escapes_of_any_bytes_in_either_case(
        bytes in prop::collection::vec(any::<u8>(), 0..48),
        lower in prop::collection::vec(any::<bool>(), 48),
    ) {
        // Bytes that are not UTF-8 turn into U+FFFD, as Python's `unquote` does.
        let text = escape_all(&bytes, &lower);
        prop_assert_eq!(signer::decode(&text), String::from_utf8_lossy(&bytes).into_owned());
    }

    #[test]
    fn canonical_uri_is_encoded_idempotent_and_keeps_the_segments(path in prop_oneof![escape_soup(), any::<String>()]) {
        let uri = signer::canonical_uri(&path);
        prop_assert!(uri.ends_with('/'), "{uri:?}");
        for segment in uri.split('/') {
            prop_assert!(is_percent_encoded(segment), "segment {segment:?} of {uri:?}");
        }
        prop_assert_eq!(signer::canonical_uri(&uri), uri.clone(), "not idempotent");
        let segments = |p: &str| p.trim_end_matches('/').split('/').count();
        if path.ends_with('/') {
            prop_assert_eq!(segments(&uri), segments(&path));
        } else {
            prop_assert_eq!(uri.split('/').count(), path.split('/').count() + 1);
        }
    }

    #[test]
    fn canonical_uri_keeps_an_encoded_path(segments in prop::collection::vec(any::<String>(), 1..6)) {
        let path = segments.iter().map(|s| signer::encode(s)).collect::<Vec<_>>().join("/");
        let mut wanted = path.clone();
        if !wanted.ends_with('/') {
            wanted.push('/');
        }
        prop_assert_eq!(signer::canonical_uri(&path), wanted);
    }

    #[test]
    fn canonical_query_is_sorted_reversible_and_ignores_input_order(
        (pairs, shuffled) in prop::collection::vec((any::<String>(), any::<String>()), 0..8)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
    ) {
        let q = signer::canonical_query(&pairs);
        prop_assert_eq!(&signer::canonical_query(&shuffled), &q);
        let parts: Vec<&str> = if q.is_empty() { vec![] } else { q.split('&').collect() };
        prop_assert_eq!(parts.len(), pairs.len(), "{:?}", q);
        let mut sorted = parts.clone();
        sorted.sort_by_key(|p| p.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())));
        prop_assert_eq!(&sorted, &parts, "not sorted by key then value");
        let mut back: Vec<(String, String)> = parts
            .iter()
            .map(|p| {
                let (k, v) = p.split_once('=').expect("key=value");
                assert!(is_percent_encoded(k) && is_percent_encoded(v), "{p:?}");
                (signer::decode(k), signer::decode(v))
            })
            .collect();
        let mut original = pairs.clone();
        back.sort();
        original.sort();
        prop_assert_eq!(back, original);
    }

    #[test]
    fn sdk_date_round_trips_to_the_second_and_sorts_like_time(
        a in 0u64..253_402_300_800,
        b in 0u64..253_402_300_800,
        nanos in 0u32..1_000_000_000,
    ) {
        let t = UNIX_EPOCH + Duration::new(a, nanos);
        let d = signer::sdk_date(t);
        let b8 = d.as_bytes();
        prop_assert_eq!(d.len(), 16);
        prop_assert!(
            b8[..8].iter().chain(&b8[9..15]).all(u8::is_ascii_digit) && b8[8] == b'T' && b8[15] == b'Z',
            "{d:?}"
        );
        prop_assert_eq!(signer::parse_sdk_date(&d), Some(UNIX_EPOCH + Duration::from_secs(a)));
        let e = signer::sdk_date(UNIX_EPOCH + Duration::from_secs(b));
        prop_assert_eq!(a.cmp(&b), d.cmp(&e), "{} vs {}", d, e);
    }

    #[test]
    fn parse_sdk_date_accepts_only_what_sdk_date_writes(
        s in prop_oneof![
            any::<String>(),
            "[0-9T Z:é-]{14,18}",
            "[0-9]{8}T[0-9]{6}Z",
            // a valid date with one character replaced, possibly by a multibyte one
            (0u64..253_402_300_800, 0usize..16, any::<char>()).prop_map(|(secs, at, c)| {
                let mut d: Vec<char> = signer::sdk_date(UNIX_EPOCH + Duration::from_secs(secs)).chars().collect();
                d[at] = c;
                d.into_iter().collect()
            }),
        ],
    ) {
        if let Some(t) = signer::parse_sdk_date(&s) {
            let back = signer::sdk_date(t);
            // A leap second (`60`) is read as the second before it.
            let leap = s.ends_with("60Z") && back == format!("{}59Z", &s[..13]);
            prop_assert!(back == s || leap, "{s:?} parsed, but writes back as {back:?}");
        }
    }

    #[test]
    fn signatures_depend_on_signed_content_and_nothing_else(
        headers in prop::collection::btree_map("[a-z][a-z0-9-]{0,12}", "[!-~]([ -~]{0,20}[!-~])?", 1..6),
        upper in prop::collection::vec(any::<bool>(), 6),
        order in any::<usize>(),
        unsigned in prop::collection::vec(("[a-z]{1,5}_[a-z]{1,5}", "[ -~]{0,10}"), 0..3),
        query in prop::collection::vec(("[ -~]{1,8}", "[ -~]{0,8}"), 0..4),
        path in "(/[ -~]{0,10}){1,4}",
        body in prop::collection::vec(any::<u8>(), 0..32),
        secret in "[!-~]{1,64}",
        date in (0u64..253_402_300_000).prop_map(|s| signer::sdk_date(UNIX_EPOCH + Duration::from_secs(s))),
    ) {
        let query = signer::canonical_query(&query);
        let list: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let sign = |l: &[(String, String)], q: &str, b: &[u8], d: &str, sk: &str| {
            let h: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            signer::sign("GET", &path, q, &h, b, d, sk)
        };
        let base = sign(&list, &query, &body, &date, &secret);
        prop_assert_eq!(&sign(&list, &query, &body, &date, &secret), &base, "not deterministic");
        prop_assert_eq!(base.signature.len(), 64);
        prop_assert!(base.signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        prop_assert_eq!(&base.signed_headers, &headers.keys().cloned().collect::<Vec<_>>().join(";"));

        // Header order, the case of names and headers whose names hold `_` do not matter.
        let mut other = list.clone();
        for (i, (k, _)) in other.iter_mut().enumerate() {
            if upper[i] {
                *k = k.to_ascii_uppercase();
            }
        }
        other.extend(unsigned.iter().cloned());
        let n = other.len();
        other.rotate_left(order % n);
        prop_assert_eq!(&sign(&other, &query, &body, &date, &secret), &base);

        // Everything signed does.
        for i in 0..list.len() {
            let mut changed = list.clone();
            changed[i].1.push('x');
            prop_assert_ne!(&sign(&changed, &query, &body, &date, &secret).signature, &base.signature);
        }
        let mut more = list.clone();
        more.push(("x-extra".into(), "1".into()));
        if !headers.contains_key("x-extra") {
            prop_assert_ne!(&sign(&more, &query, &body, &date, &secret).signature, &base.signature);
        }
        let other_query = if query.is_empty() { "a=b".to_string() } else { format!("{query}&z=") };
        prop_assert_ne!(&sign(&list, &other_query, &body, &date, &secret).signature, &base.signature);
        let mut other_body = body.clone();
        other_body.push(0);
        prop_assert_ne!(&sign(&list, &query, &other_body, &date, &secret).signature, &base.signature);
        let other_secret = if secret.len() < 64 { format!("{secret}!") } else { secret[1..].to_string() };
        prop_assert_ne!(&sign(&list, &query, &body, &date, &other_secret).signature, &base.signature);
        let other_date = signer::sdk_date(signer::parse_sdk_date(&date).unwrap() + Duration::from_secs(1));
        prop_assert_ne!(&sign(&list, &query, &body, &other_date, &secret).signature, &base.signature);
    }

    #[test]
    fn decode_keeps_malformed_escapes_literally(s in escape_soup()) {
        let b = s.as_bytes();
        let hex = |c: u8| c.is_ascii_hexdigit();
        let has_escape = (0..b.len()).any(|i| b[i] == b'%' && i + 2 < b.len() && hex(b[i + 1]) && hex(b[i + 2]));
        prop_assume!(!has_escape);
        prop_assert_eq!(signer::decode(&s), s);
    }

    #[test]
    fn sdk_date_never_panics(secs in any::<u64>(), nanos in 0u32..1_000_000_000) {
        if let Some(t) = UNIX_EPOCH.checked_add(Duration::new(secs, nanos)) {
            let d = signer::sdk_date(t);
            prop_assert!(d.ends_with('Z'), "{d:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The decoder of the API's answer
// ---------------------------------------------------------------------------------------

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field value that is not a non-negative integer, as JSON text.
fn bad_count() -> impl Strategy<Value = String> {
    prop_oneof![
        (i64::MIN..0).prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| {
                let s = serde_json::to_string(&f).unwrap();
                if s.contains(['.', 'e', 'E']) {
                    s
                } else {
                    format!("{s}.0")
                }
            }),
        (0u64..1000).prop_map(|n| format!("{n}.0")),
        (0u64..1000).prop_map(|n| format!("{n}e0")),
        (u128::from(u64::MAX) + 1..u128::MAX).prop_map(|n| n.to_string()),
        any::<String>().prop_map(|s| quoted(&s)),
        any::<u64>().prop_map(|n| quoted(&n.to_string())),
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        Just("[]".to_string()),
        Just("[1]".to_string()),
        Just("{}".to_string()),
    ]
}

/// A JSON object with the two counts (as given, or missing) and other fields, in any order.
fn answer(
    fail: Option<String>,
    success: Option<String>,
    extra: Vec<(String, serde_json::Value)>,
    rotate: usize,
    pretty: bool,
) -> String {
    let mut fields: Vec<(String, String)> = extra
        .into_iter()
        .filter(|(k, _)| k != "fail_num" && k != "success_num")
        .map(|(k, v)| (quoted(&k), v.to_string()))
        .collect();
    fields.extend(fail.map(|v| ("\"fail_num\"".to_string(), v)));
    fields.extend(success.map(|v| ("\"success_num\"".to_string(), v)));
    if !fields.is_empty() {
        let n = fields.len();
        fields.rotate_left(rotate % n);
    }
    let sep = if pretty { ",\n  " } else { "," };
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}:{}{v}", if pretty { " " } else { "" }))
        .collect::<Vec<_>>()
        .join(sep);
    if pretty {
        format!("{{\n  {body}\n}}\n")
    } else {
        format!("{{{body}}}")
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn decoding_any_bytes_never_panics_and_only_accepts_true_counts(
        body in prop_oneof![
            any::<Vec<u8>>(),
            any::<String>().prop_map(String::into_bytes),
            (0usize..20_000, one_of(&["[", "{\"fail_num\":", "{\"a\":["]))
                .prop_map(|(n, open)| open.repeat(n).into_bytes()),
            json_value().prop_map(|v| v.to_string().into_bytes()),
        ],
    ) {
        match decode_statistics(&body) {
            Ok(stats) => {
                let v: serde_json::Value = serde_json::from_slice(&body).expect("accepted, so JSON");
                prop_assert_eq!(v["fail_num"].as_u64(), Some(stats.fail_num));
                prop_assert_eq!(v["success_num"].as_u64(), Some(stats.success_num));
            }
            Err(e) => {
                prop_assert_eq!(e.reason().as_str(), "decode");
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn every_object_with_two_counts_decodes_to_exactly_them(
        fail in any::<u64>(),
        success in any::<u64>(),
        extra in prop::collection::vec((any::<String>(), json_value()), 0..5),
        rotate in any::<usize>(),
        pretty in any::<bool>(),
    ) {
        let body = answer(Some(fail.to_string()), Some(success.to_string()), extra, rotate, pretty);
        let got = decode_statistics(body.as_bytes());
        prop_assert!(
            matches!(got, Ok(s) if s == Statistics { fail_num: fail, success_num: success }),
            "{body} decoded as {got:?}"
        );
    }

    #[test]
    fn a_missing_or_malformed_count_is_a_decode_error_naming_it(
        good in any::<u64>(),
        bad in prop::option::weighted(0.9, bad_count()),
        bad_is_fail in any::<bool>(),
        extra in prop::collection::vec((any::<String>(), json_value()), 0..3),
        rotate in any::<usize>(),
        pretty in any::<bool>(),
    ) {
        let (fail, success) = if bad_is_fail {
            (bad.clone(), Some(good.to_string()))
        } else {
            (Some(good.to_string()), bad.clone())
        };
        let body = answer(fail, success, extra, rotate, pretty);
        match decode_statistics(body.as_bytes()) {
            Ok(s) => return Err(TestCaseError::fail(format!("{body} decoded as {s:?}"))),
            Err(e) => {
                prop_assert_eq!(e.reason().as_str(), "decode");
                let field = if bad_is_fail { "fail_num" } else { "success_num" };
                prop_assert!(e.to_string().contains(field), "{e} does not name {field} in {body}");
            }
        }
    }

    #[test]
    fn an_answer_that_is_not_an_object_is_refused(
        v in json_value().prop_filter("not an object", |v| !v.is_object()),
    ) {
        let e = decode_statistics(v.to_string().as_bytes()).unwrap_err();
        prop_assert_eq!(e.reason().as_str(), "decode");
        prop_assert!(e.to_string().contains("not a JSON object"), "{e}");
    }
}

// ---------------------------------------------------------------------------------------
// The config loader
// ---------------------------------------------------------------------------------------

/// The panic payload of `f`, if it panics.
fn panic_of<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(std::string::ToString::to_string)
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

/// The `config` crate reaches `unreachable!()` on a YAML mapping key that is neither a string
/// nor an integer; `yaml_keys_of_any_kind_never_panic` is about that.
const KNOWN_KEY_PANIC: &str = "internal error: entered unreachable code";

/// What every error must look like: something said, and no empty line.
fn check_error_text(e: &ConfigError) -> Result<(), TestCaseError> {
    let text = e.to_string();
    prop_assert!(!text.trim().is_empty(), "empty error: {e:?}");
    for line in text.lines() {
        prop_assert!(!line.trim().is_empty(), "empty line in {text:?}");
    }
    Ok(())
}

/// Where a problem is: every reported problem starts with the key it is about.
fn names_a_key(problem: &str) -> bool {
    ["web", "poll", "accounts", "HSS_EXPORTER__"]
        .iter()
        .any(|k| problem.starts_with(k))
        || problem.contains("unknown field")
}

/// Pieces of YAML, some of them about the schema, that a text is glued from.
fn yaml_soup() -> impl Strategy<Value = String> {
    let piece = one_of(&[
        "web: ",
        "poll: ",
        "accounts: ",
        "listen_address: ",
        "interval: ",
        "timeout: ",
        "stale_after: ",
        "rate_limit_per_minute: ",
        "name: ",
        "region: ",
        "endpoint: ",
        "auth: ",
        "ak_sk: ",
        "token: ",
        "projects: ",
        "project_id: ",
        "registry_types: ",
        "access_key_env: ",
        "\n",
        "\n  ",
        "\n    ",
        "- ",
        "  ",
        "{",
        "}",
        "[",
        "]",
        ", ",
        "\"",
        "'",
        "&a ",
        "*a",
        "!!str ",
        "!!map ",
        "!x ",
        "|",
        ">",
        "---\n",
        "...\n",
        "# c",
        "\t",
        "%YAML 1.2\n",
        "5m",
        "0s",
        "abc",
        "0",
        "7",
        "Harbor",
        "cn-north-4",
        ":9100",
        "\\",
        "é",
        "\u{feff}",
        "\r",
        "\u{85}",
    ])
    .prop_map(str::to_string);
    prop::collection::vec(
        prop_oneof![9 => piece, 1 => any::<char>().prop_map(String::from)],
        0..40,
    )
    .prop_map(|v| v.concat())
}

/// A YAML value of the config, written in flow style (JSON with plain scalars allowed).
#[derive(Debug, Clone)]
enum Node {
    Str(String),
    Plain(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl Node {
    fn render(&self, out: &mut String) {
        match self {
            Node::Str(s) => out.push_str(&quoted(s)),
            Node::Plain(s) => out.push_str(s),
            Node::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    item.render(out);
                }
                out.push(']');
            }
            Node::Map(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&quoted(k));
                    out.push_str(": ");
                    v.render(out);
                }
                out.push('}');
            }
        }
    }
}

type Field = Option<(String, Node)>;

fn strs(pool: &'static [&'static str]) -> BoxedStrategy<Node> {
    select(pool).prop_map(|s| Node::Str(s.to_string())).boxed()
}

fn plains(pool: &'static [&'static str]) -> BoxedStrategy<Node> {
    select(pool)
        .prop_map(|s| Node::Plain(s.to_string()))
        .boxed()
}

/// Mostly one of `good`, now and then one of `bad`.
fn mostly(good: &'static [&'static str], bad: &'static [&'static str]) -> BoxedStrategy<Node> {
    prop_oneof![8 => strs(good), 1 => strs(bad)].boxed()
}

/// Mostly `good` (values of the right type, sensible or not), rarely a value of the wrong type,
/// so that most configs get past deserializing and into validation.
fn typed(good: BoxedStrategy<Node>, wrong: BoxedStrategy<Node>) -> BoxedStrategy<Node> {
    prop_oneof![100 => good, 1 => wrong].boxed()
}

fn wrong_type() -> BoxedStrategy<Node> {
    prop_oneof![
        strs(&["", "x", "5m"]),
        plains(&["5", "-1", "1.5", "true", "[]", "{}", "[1, 2]"]),
    ]
    .boxed()
}

/// The key with a value, most of the time.
fn field(key: &'static str, value: BoxedStrategy<Node>) -> BoxedStrategy<Field> {
    prop::option::weighted(0.85, value.prop_map(move |v| (key.to_string(), v))).boxed()
}

/// Rarely, a key the schema does not have.
fn unknown_field() -> BoxedStrategy<Field> {
    let keys: &'static [&'static str] = &[
        "extra",
        "timout",
        "enterprise_project",
        "registry_type",
        "Extra",
        "1",
        "",
        "x.y",
        "web_",
    ];
    prop::option::weighted(
        0.01,
        (select(keys), wrong_type()).prop_map(|(k, v)| (k.to_string(), v)),
    )
    .boxed()
}

/// A map of `fields`, maybe with an unknown key, rarely a value of the wrong type.
fn section(mut fields: Vec<BoxedStrategy<Field>>) -> BoxedStrategy<Node> {
    fields.push(unknown_field());
    let map = fields
        .prop_map(|v| Node::Map(v.into_iter().flatten().collect()))
        .boxed();
    typed(map, wrong_type())
}

/// A list of 1 to `max - 1` items, now and then empty, rarely a value of the wrong type.
fn list(item: BoxedStrategy<Node>, max: usize) -> BoxedStrategy<Node> {
    let items = prop_oneof![
        12 => prop::collection::vec(item, 1..max),
        1 => Just(vec![]),
    ];
    typed(items.prop_map(Node::List).boxed(), wrong_type())
}

fn duration() -> BoxedStrategy<Node> {
    let good = prop_oneof![
        8 => (0u64..200_000).prop_map(|s| Node::Str(format!("{s}s"))),
        8 => strs(&["10s", "5m", "30m", "1m", "1h 30m", "500ms"]),
        1 => strs(&["0s", "abc", "", "-5s", "99999999999999999999y", "5 minutes"]),
    ];
    typed(good.boxed(), plains(&["5", "0", "1.5", "true"]))
}

fn count() -> BoxedStrategy<Node> {
    let good = prop_oneof![
        4 => (1u32..1000).prop_map(|n| Node::Plain(n.to_string())),
        1 => plains(&["0", "4294967295", "null"]),
    ];
    typed(good.boxed(), plains(&["-1", "4294967296", "1.5", "\"5\""]))
}

fn id() -> BoxedStrategy<Node> {
    let good = prop_oneof![
        40 => strs(&[
            "0123456789abcdef0123456789abcdef",
            "fedcba9876543210fedcba9876543210",
            "p1",
            "0",
            "all_granted_eps",
            "ünïcödé",
        ]),
        2 => strs(&["", "  ", "tab\there", "line\nbreak"]),
        1 => Just(Node::Str("x".repeat(257))),
        1 => Just(Node::Str("y".repeat(256))),
        1 => plains(&["123", "11111111111111111111111111111111"]),
    ];
    typed(good.boxed(), plains(&["1.5", "true", "[]"]))
}

fn name() -> BoxedStrategy<Node> {
    mostly(&["prod", "staging", "ünï"], &["", "  ", "line\nbreak"])
}

fn region() -> BoxedStrategy<Node> {
    mostly(
        &["cn-north-4", "eu-west-101", " cn-north-4 "],
        &["", "cn-nort-4", "my-stack-1"],
    )
}

fn endpoint() -> BoxedStrategy<Node> {
    mostly(
        &["https://hss.example.test", "http://127.0.0.1:8080/base/"],
        &["ftp://x", "not a url", "https://h/?q=1", "http://", ""],
    )
}

fn env_name() -> BoxedStrategy<Node> {
    typed(
        prop_oneof![
            4 => strs(&["AK", "SK", "TOK", "PW"]),
            1 => strs(&["EMPTY", "UNSET", ""]),
        ]
        .boxed(),
        plains(&["1", "[]"]),
    )
}

/// `{SECRET_FILE}` stands for a readable file holding a secret.
fn file_path() -> BoxedStrategy<Node> {
    typed(
        prop_oneof![
            2 => strs(&["{SECRET_FILE}"]),
            1 => strs(&["/nonexistent/secret", "/nonexistent/line\nbreak", ""]),
        ]
        .boxed(),
        plains(&["1", "[]"]),
    )
}

/// `{name}_env` or `{name}_file`, mostly exactly one of them.
fn secret_ref(name: &'static str) -> BoxedStrategy<Vec<(String, Node)>> {
    let env = env_name().prop_map(move |v| (format!("{name}_env"), v));
    let file = file_path().prop_map(move |v| (format!("{name}_file"), v));
    prop_oneof![
        5 => env.clone().prop_map(|f| vec![f]),
        3 => file.clone().prop_map(|f| vec![f]),
        1 => (env, file).prop_map(|(a, b)| vec![a, b]),
        1 => Just(vec![]),
    ]
    .boxed()
}

fn registry_types() -> BoxedStrategy<Node> {
    let name = prop_oneof![
        20 => strs(&["Harbor", "Jfrog", "SwrPrivate", "SwrShared", "SwrEnterprise", "Other"]),
        1 => strs(&["harbour", "", "Nexus"]),
    ];
    list(name.boxed(), 4)
}

fn auth() -> BoxedStrategy<Node> {
    let ak_sk = (
        secret_ref("access_key"),
        secret_ref("secret_key"),
        prop::option::weighted(0.2, secret_ref("security_token")),
        unknown_field(),
    )
        .prop_map(|(a, s, t, u)| {
            let fields = a
                .into_iter()
                .chain(s)
                .chain(t.into_iter().flatten())
                .chain(u);
            Node::Map(fields.collect())
        });
    let token = (secret_ref("token"), unknown_field())
        .prop_map(|(t, u)| Node::Map(t.into_iter().chain(u).collect()));
    let iam = (
        prop::option::weighted(
            0.99,
            mostly(&["acme"], &["", " "]).prop_map(|v| ("domain".to_string(), v)),
        ),
        prop::option::weighted(
            0.99,
            mostly(&["ops"], &["", " "]).prop_map(|v| ("user".to_string(), v)),
        ),
        secret_ref("password"),
        prop::option::weighted(0.3, endpoint()),
        unknown_field(),
    )
        .prop_map(|(d, u, p, e, x)| {
            let e = e.map(|e| ("iam_endpoint".to_string(), e));
            Node::Map(d.into_iter().chain(u).chain(p).chain(e).chain(x).collect())
        });
    // Mostly exactly one way to authenticate.
    let which = prop_oneof![
        18 => (0usize..3).prop_map(|i| vec![i]),
        1 => Just(vec![]),
        1 => subsequence(vec![0usize, 1, 2], 2..=3),
    ];
    let map = (which, ak_sk, token, iam)
        .prop_map(|(which, a, t, i)| {
            let all = [("ak_sk", a), ("token", t), ("iam_password", i)];
            let chosen = all
                .into_iter()
                .enumerate()
                .filter(|(k, _)| which.contains(k))
                .map(|(_, (k, v))| (k.to_string(), v));
            Node::Map(chosen.collect())
        })
        .boxed();
    typed(map, wrong_type())
}

fn project() -> BoxedStrategy<Node> {
    section(vec![
        prop::option::weighted(0.99, id().prop_map(|v| ("project_id".to_string(), v))).boxed(),
        prop::option::weighted(
            0.4,
            id().prop_map(|v| ("enterprise_project_id".to_string(), v)),
        )
        .boxed(),
        prop::option::weighted(
            0.5,
            registry_types().prop_map(|v| ("registry_types".to_string(), v)),
        )
        .boxed(),
    ])
}

fn account() -> BoxedStrategy<Node> {
    section(vec![
        prop::option::weighted(0.99, name().prop_map(|v| ("name".to_string(), v))).boxed(),
        prop::option::weighted(0.99, region().prop_map(|v| ("region".to_string(), v))).boxed(),
        prop::option::weighted(0.3, endpoint().prop_map(|v| ("endpoint".to_string(), v))).boxed(),
        prop::option::weighted(
            0.3,
            count().prop_map(|v| ("rate_limit_per_minute".to_string(), v)),
        )
        .boxed(),
        prop::option::weighted(0.99, auth().prop_map(|v| ("auth".to_string(), v))).boxed(),
        prop::option::weighted(
            0.99,
            list(project(), 4).prop_map(|v| ("projects".to_string(), v)),
        )
        .boxed(),
    ])
}

fn file_config() -> BoxedStrategy<Node> {
    let listen = mostly(
        &["127.0.0.1:9943", ":9100", "[::1]:80", "localhost:9943"],
        &["nowhere", "", "1.2.3.4:99999"],
    );
    let root = vec![
        field("web", section(vec![field("listen_address", listen)])),
        field(
            "poll",
            section(vec![
                field("interval", duration()),
                field("timeout", duration()),
                field("stale_after", duration()),
                prop::option::weighted(
                    0.3,
                    count().prop_map(|v| ("rate_limit_per_minute".to_string(), v)),
                )
                .boxed(),
            ]),
        ),
        prop::option::weighted(
            0.99,
            list(account(), 3).prop_map(|v| ("accounts".to_string(), v)),
        )
        .boxed(),
        unknown_field(),
    ];
    // The root is always a map: a key at fault can then always be named.
    root.prop_map(|v| Node::Map(v.into_iter().flatten().collect()))
        .boxed()
}

/// Secrets, named by the config's `*_env` keys, plus `HSS_EXPORTER__` overrides.
fn random_env() -> impl Strategy<Value = Env> {
    let secret = "[A-Za-z0-9+/=]{4,24}".prop_map(|s| format!("SECRET-{s}"));
    // Mostly overrides of real keys, sometimes a path made of any words of the schema.
    let known = one_of(&[
        ("POLL__INTERVAL", "10m"),
        ("POLL__INTERVAL", "0s"),
        ("POLL__TIMEOUT", "5s"),
        ("POLL__STALE_AFTER", "1h"),
        ("POLL__RATE_LIMIT_PER_MINUTE", "7"),
        ("WEB__LISTEN_ADDRESS", ":9100"),
        ("WEB__LISTEN_ADDRESS", "nowhere"),
    ])
    .prop_map(|(k, v)| (k.to_string(), v.to_string()));
    let word = one_of(&[
        "WEB",
        "POLL",
        "ACCOUNTS",
        "LISTEN_ADDRESS",
        "INTERVAL",
        "RATE_LIMIT_PER_MINUTE",
        "NAME",
        "0",
        "EXTRA",
        "",
        "Web",
    ]);
    let value = one_of(&["10m", "0s", ":9100", "7", "0", "", "x", "true"]);
    let any_path = (prop::collection::vec(word, 1..4), value)
        .prop_map(|(words, v)| (words.join("__"), v.to_string()));
    let overrides = prop::collection::vec(prop_oneof![6 => known, 1 => any_path], 0..3);
    (
        secret.clone(),
        secret.clone(),
        secret.clone(),
        secret,
        prop::option::weighted(0.5, overrides),
    )
        .prop_map(|(ak, sk, tok, pw, overrides)| {
            let mut env: Env = [("AK", ak), ("SK", sk), ("TOK", tok), ("PW", pw)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            env.insert("EMPTY".into(), "  \n".into());
            for (key, value) in overrides.into_iter().flatten() {
                env.insert(format!("HSS_EXPORTER__{key}"), value);
            }
            env
        })
}

/// What the file behind `{SECRET_FILE}` holds, less its line ending.
const FILE_SECRET: &str = "SECRET-from-a-file";

/// Every secret a config can read: those of `env` and [`FILE_SECRET`].
fn secrets_of(env: &Env) -> Vec<&str> {
    env.values()
        .filter(|v| v.starts_with("SECRET-"))
        .map(String::as_str)
        .chain([FILE_SECRET])
        .collect()
}

/// What a loaded config must satisfy, whatever the file said.
fn check_settings(s: &Settings, secrets: &[&str]) -> Result<(), TestCaseError> {
    let p = s.poll;
    prop_assert!(!p.interval.is_zero() && !p.timeout.is_zero() && !p.stale_after.is_zero());
    prop_assert!(p.stale_after >= p.interval);
    prop_assert!(p.global_rate_limit_per_minute != Some(0));
    prop_assert!(!s.accounts.is_empty());
    let mut names = std::collections::HashSet::new();
    let mut targets = std::collections::HashSet::new();
    for a in &s.accounts {
        prop_assert!(
            !a.name.trim().is_empty() && names.insert(a.name.clone()),
            "{:?}",
            a.name
        );
        prop_assert!(!a.region.is_empty() && a.region.trim() == a.region);
        prop_assert!(
            matches!(a.endpoint.scheme(), "http" | "https") && a.endpoint.query().is_none()
        );
        prop_assert!(a.rate_limit_per_minute > 0);
        prop_assert!(!a.targets.is_empty());
        for t in &a.targets {
            prop_assert!(targets.insert(t.clone()), "duplicate {t}");
            prop_assert_eq!(&t.account, &a.name);
            let ids = std::iter::once(&t.project_id).chain(&t.enterprise_project_id);
            for id in ids {
                prop_assert!(!id.trim().is_empty() && id.chars().count() <= 256);
                prop_assert!(!id.chars().any(char::is_control), "{id:?}");
            }
        }
    }
    let debug = format!("{s:?}");
    for secret in secrets {
        prop_assert!(!debug.contains(secret), "a secret shows in {debug}");
    }
    Ok(())
}

/// Loads a rendered `node` with `env`, `{SECRET_FILE}` pointing at a real file.
fn load_node(node: &Node, env: &Env) -> (String, Result<Settings, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, format!("{FILE_SECRET}\n")).unwrap();
    let mut yaml = String::new();
    node.render(&mut yaml);
    let yaml = yaml.replace("{SECRET_FILE}", &file.display().to_string());
    let result = config::load_str(&yaml, env);
    (yaml, result)
}

// ---- valid configs, built from a description of what they must load into ----

#[derive(Debug, Clone)]
enum AuthSpec {
    AkSk {
        ak: String,
        sk: String,
        /// The SK read from a file that ends with this.
        sk_file: Option<&'static str>,
        token: Option<String>,
    },
    Token(String),
    Iam {
        domain: String,
        user: String,
        password: String,
        iam_endpoint: Option<String>,
    },
}

#[derive(Debug, Clone)]
struct ProjectSpec {
    id: String,
    eps: Option<String>,
    types: Option<Vec<RegistryType>>,
}

#[derive(Debug, Clone)]
struct AccountSpec {
    name: String,
    region: String,
    endpoint: Option<String>,
    rate: Option<u32>,
    auth: AuthSpec,
    projects: Vec<ProjectSpec>,
}

#[derive(Debug, Clone)]
struct ConfigSpec {
    listen: Option<(String, ListenAddress)>,
    listen_env: Option<u16>,
    /// interval, timeout, `stale_after`
    poll: Option<(Duration, Duration, Duration)>,
    global_rate: Option<u32>,
    accounts: Vec<AccountSpec>,
    noise: Vec<(String, String)>,
}

/// Text for names and IDs: printable, possibly with spaces inside, quotes, `%`, `/`, non-ASCII.
fn text(max: usize) -> impl Strategy<Value = String> {
    let c = prop_oneof![
        8 => prop::char::range('a', 'z'),
        2 => prop::char::range('0', '9'),
        1 => prop::char::range('A', 'Z'),
        2 => one_of(&[' ', '-', '_', '.', ':', '/', '%', '#', '"', '\\', '\'', '{', '[', '&', '*']),
        1 => one_of(&['é', 'ß', 'Ж', '項', '🦀']),
    ];
    (
        prop::char::range('a', 'z'),
        prop::collection::vec(c, 0..max),
    )
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
}

fn secret_value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/=]{4,40}".prop_map(|s| format!("SECRET-{s}"))
}

fn auth_spec() -> impl Strategy<Value = AuthSpec> {
    prop_oneof![
        (
            secret_value(),
            secret_value(),
            prop::option::of(one_of(&["", "\n", "\r\n", "\n\n"])),
            prop::option::of(secret_value()),
        )
            .prop_map(|(ak, sk, sk_file, token)| AuthSpec::AkSk {
                ak,
                sk,
                sk_file,
                token
            }),
        secret_value().prop_map(AuthSpec::Token),
        (
            text(20),
            text(20),
            secret_value(),
            prop::option::of(Just("https://iam.example.test/".to_string())),
        )
            .prop_map(|(domain, user, password, iam_endpoint)| AuthSpec::Iam {
                domain,
                user,
                password,
                iam_endpoint,
            }),
    ]
}

fn project_spec(j: usize) -> impl Strategy<Value = ProjectSpec> {
    (
        // What a request can carry unchanged in its path and X-Project-Id header.
        prop_oneof![4 => "[A-Za-z0-9_-]{1,40}", 1 => "[0-9a-f]{255}", 1 => "[0-9]{1,20}"],
        prop::option::of(prop_oneof![
            text(40),
            Just("0".to_string()),
            Just("all_granted_eps".to_string())
        ]),
        prop::option::of(subsequence(RegistryType::ALL.to_vec(), 1..=6).prop_shuffle()),
    )
        // The index makes the projects of an account, and so its targets, distinct.
        .prop_map(move |(id, eps, types)| ProjectSpec {
            id: format!("{id}{j}"),
            eps,
            types,
        })
}

fn account_spec(i: usize) -> impl Strategy<Value = AccountSpec> {
    let region = prop_oneof![
        select(model::KNOWN_REGIONS.to_vec()).prop_map(|r| (r.to_string(), None)),
        (
            "[a-z]{2}-[a-z]{3,8}-[0-9]{1,3}",
            one_of(&[
                "https://hss.example.test",
                "http://127.0.0.1:8080/base/",
                "http://[::1]:9/",
            ])
        )
            .prop_map(|(r, e)| (r, Some(e.to_string()))),
    ];
    let projects = (1usize..5).prop_flat_map(|n| (0..n).map(project_spec).collect::<Vec<_>>());
    (
        text(20),
        region,
        prop::option::of(1u32..=u32::MAX),
        auth_spec(),
        projects,
    )
        .prop_map(
            move |(name, (region, endpoint), rate, auth, projects)| AccountSpec {
                // The index makes the names distinct.
                name: format!("{name}-{i}"),
                region,
                endpoint,
                rate,
                auth,
                projects,
            },
        )
}

fn config_spec() -> impl Strategy<Value = ConfigSpec> {
    let addr = |a: SocketAddr| ListenAddress::Addr(a);
    let listen = prop::option::of(prop_oneof![
        any::<u16>().prop_map(move |p| (
            format!("127.0.0.1:{p}"),
            addr(SocketAddr::from(([127, 0, 0, 1], p)))
        )),
        any::<u16>().prop_map(|p| (format!(":{p}"), ListenAddress::All(p))),
        any::<u16>().prop_map(move |p| (
            format!("0.0.0.0:{p}"),
            addr(SocketAddr::from(([0, 0, 0, 0], p)))
        )),
        any::<u16>().prop_map(move |p| (
            format!("localhost:{p}"),
            addr(SocketAddr::from(([127, 0, 0, 1], p)))
        )),
        any::<u16>().prop_map(move |p| (
            format!("[::1]:{p}"),
            addr(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, p)))
        )),
    ]);
    let poll = prop::option::of(
        (1u64..7 * 86_400_000, 1u64..3_600_000, 0u64..86_400_000).prop_map(|(i, t, extra)| {
            (
                Duration::from_millis(i),
                Duration::from_millis(t),
                Duration::from_millis(i + extra),
            )
        }),
    );
    let accounts = (1usize..4).prop_flat_map(|n| (0..n).map(account_spec).collect::<Vec<_>>());
    let noise = prop::collection::vec(("[A-Z][A-Z0-9_]{0,12}", "[ -~]{0,12}"), 0..4);
    (
        listen,
        prop::option::of(any::<u16>()),
        poll,
        prop::option::of(1u32..10_000),
        accounts,
        noise,
    )
        .prop_map(
            |(listen, listen_env, poll, global_rate, accounts, noise)| ConfigSpec {
                listen,
                listen_env,
                poll,
                global_rate,
                accounts,
                noise,
            },
        )
}

/// The YAML of `spec` and the environment it needs; secret files are written into `dir`.
fn render_spec(spec: &ConfigSpec, dir: &std::path::Path) -> (String, Env) {
    let mut env = Env::new();
    for (k, v) in &spec.noise {
        if !k.starts_with("HSS_EXPORTER__") && !k.contains("_ENV_") {
            env.insert(k.clone(), v.clone());
        }
    }
    let mut y = String::new();
    if let Some((text, _)) = &spec.listen {
        writeln!(y, "web:\n  listen_address: {}", quoted(text)).unwrap();
    }
    if let Some(port) = spec.listen_env {
        env.insert(
            "HSS_EXPORTER__WEB__LISTEN_ADDRESS".into(),
            format!(":{port}"),
        );
    }
    if spec.poll.is_some() || spec.global_rate.is_some() {
        y.push_str("poll:\n");
    }
    if let Some((i, t, s)) = spec.poll {
        for (k, d) in [("interval", i), ("timeout", t), ("stale_after", s)] {
            writeln!(
                y,
                "  {k}: {}",
                quoted(&humantime::format_duration(d).to_string())
            )
            .unwrap();
        }
    }
    if let Some(r) = spec.global_rate {
        writeln!(y, "  rate_limit_per_minute: {r}").unwrap();
    }
    y.push_str("accounts:\n");
    for (i, a) in spec.accounts.iter().enumerate() {
        writeln!(
            y,
            "  - name: {}\n    region: {}",
            quoted(&a.name),
            quoted(&a.region)
        )
        .unwrap();
        if let Some(e) = &a.endpoint {
            writeln!(y, "    endpoint: {}", quoted(e)).unwrap();
        }
        if let Some(r) = a.rate {
            writeln!(y, "    rate_limit_per_minute: {r}").unwrap();
        }
        let mut secret = |kind: &str, value: &str| {
            let var = format!("{kind}_ENV_{i}");
            env.insert(var.clone(), value.to_string());
            quoted(&var)
        };
        match &a.auth {
            AuthSpec::AkSk {
                ak,
                sk,
                sk_file,
                token,
            } => {
                y.push_str("    auth:\n      ak_sk:\n");
                writeln!(y, "        access_key_env: {}", secret("AK", ak)).unwrap();
                match sk_file {
                    Some(ending) => {
                        let path = dir.join(format!("sk-{i}"));
                        std::fs::write(&path, format!("{sk}{ending}")).unwrap();
                        writeln!(
                            y,
                            "        secret_key_file: {}",
                            quoted(&path.display().to_string())
                        )
                        .unwrap();
                    }
                    None => writeln!(y, "        secret_key_env: {}", secret("SK", sk)).unwrap(),
                }
                if let Some(t) = token {
                    writeln!(y, "        security_token_env: {}", secret("ST", t)).unwrap();
                }
            }
            AuthSpec::Token(t) => writeln!(
                y,
                "    auth: {{ token: {{ token_env: {} }} }}",
                secret("TOKEN", t)
            )
            .unwrap(),
            AuthSpec::Iam {
                domain,
                user,
                password,
                iam_endpoint,
            } => {
                y.push_str("    auth:\n      iam_password:\n");
                writeln!(
                    y,
                    "        domain: {}\n        user: {}",
                    quoted(domain),
                    quoted(user)
                )
                .unwrap();
                writeln!(y, "        password_env: {}", secret("PW", password)).unwrap();
                if let Some(e) = iam_endpoint {
                    writeln!(y, "        iam_endpoint: {}", quoted(e)).unwrap();
                }
            }
        }
        y.push_str("    projects:\n");
        for p in &a.projects {
            writeln!(y, "      - project_id: {}", quoted(&p.id)).unwrap();
            if let Some(eps) = &p.eps {
                writeln!(y, "        enterprise_project_id: {}", quoted(eps)).unwrap();
            }
            if let Some(types) = &p.types {
                let names: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
                writeln!(y, "        registry_types: [{}]", names.join(", ")).unwrap();
            }
        }
    }
    (y, env)
}

/// Checks `s` is exactly what `spec` describes.
fn check_against(spec: &ConfigSpec, s: &Settings) -> Result<(), TestCaseError> {
    let listen = match (spec.listen_env, &spec.listen) {
        (Some(port), _) => ListenAddress::All(port),
        (None, Some((_, addr))) => *addr,
        (None, None) => config::DEFAULT_LISTEN_ADDRESS.parse().unwrap(),
    };
    prop_assert_eq!(&s.listen_addresses, &vec![listen]);
    let (i, t, st) = spec.poll.unwrap_or((
        Duration::from_secs(300),
        Duration::from_secs(10),
        Duration::from_secs(1800),
    ));
    prop_assert_eq!(
        (s.poll.interval, s.poll.timeout, s.poll.stale_after),
        (i, t, st)
    );
    prop_assert_eq!(s.poll.global_rate_limit_per_minute, spec.global_rate);
    prop_assert_eq!(s.accounts.len(), spec.accounts.len());
    for (a, want) in s.accounts.iter().zip(&spec.accounts) {
        prop_assert_eq!(&a.name, &want.name);
        prop_assert_eq!(&a.region, &want.region);
        let endpoint = want
            .endpoint
            .clone()
            .unwrap_or_else(|| model::default_endpoint(&want.region));
        prop_assert_eq!(a.endpoint.clone(), Url::parse(&endpoint).unwrap());
        prop_assert_eq!(
            a.rate_limit_per_minute,
            want.rate.unwrap_or(config::DEFAULT_RATE_LIMIT_PER_MINUTE)
        );
        match (&a.credentials, &want.auth) {
            (
                Credentials::AkSk {
                    access_key,
                    secret_key,
                    security_token,
                },
                AuthSpec::AkSk { ak, sk, token, .. },
            ) => {
                prop_assert_eq!(access_key.expose(), ak.as_str());
                prop_assert_eq!(
                    secret_key.expose(),
                    sk.as_str(),
                    "the file's line ending is not part of it"
                );
                prop_assert_eq!(
                    security_token.as_ref().map(Secret::expose),
                    token.as_deref()
                );
            }
            (Credentials::Token(got), AuthSpec::Token(token)) => {
                prop_assert_eq!(got.expose(), token.as_str());
            }
            (
                Credentials::IamPassword {
                    domain,
                    user,
                    password,
                    iam_endpoint,
                },
                AuthSpec::Iam {
                    domain: d,
                    user: u,
                    password: p,
                    iam_endpoint: e,
                },
            ) => {
                prop_assert_eq!((domain, user, password.expose()), (d, u, p.as_str()));
                let e = e
                    .clone()
                    .unwrap_or_else(|| model::default_iam_endpoint(&want.region));
                prop_assert_eq!(iam_endpoint.clone(), Url::parse(&e).unwrap());
            }
            (got, _) => return Err(TestCaseError::fail(format!("wrong credentials {got:?}"))),
        }
        let mut wanted: Vec<[String; 5]> = Vec::new();
        for p in &want.projects {
            let types: Vec<&str> = match &p.types {
                None => vec!["all"],
                Some(ts) => ts.iter().map(|t| t.as_str()).collect(),
            };
            for t in types {
                wanted.push([
                    want.name.clone(),
                    want.region.clone(),
                    p.id.clone(),
                    p.eps.clone().unwrap_or_default(),
                    t.to_string(),
                ]);
            }
        }
        let got: Vec<[String; 5]> = a
            .targets
            .iter()
            .map(|t| t.label_values().map(str::to_string))
            .collect();
        prop_assert_eq!(got, wanted);
    }
    let n: usize = spec
        .accounts
        .iter()
        .flat_map(|a| &a.projects)
        .map(|p| p.types.as_ref().map_or(1, Vec::len))
        .sum();
    prop_assert_eq!(s.targets().count(), n);
    Ok(())
}

fn spec_secrets(spec: &ConfigSpec) -> Vec<String> {
    let mut out = Vec::new();
    for a in &spec.accounts {
        match &a.auth {
            AuthSpec::AkSk { ak, sk, token, .. } => {
                out.extend([ak.clone(), sk.clone()]);
                out.extend(token.clone());
            }
            AuthSpec::Token(t) => out.push(t.clone()),
            AuthSpec::Iam { password, .. } => out.push(password.clone()),
        }
    }
    out
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn any_text_is_loaded_or_refused_with_a_message(
        yaml in prop_oneof![yaml_soup(), any::<String>()],
        env in random_env(),
    ) {
        match panic_of(|| config::load_str(&yaml, &env)) {
            Err(panic) => prop_assert!(panic.contains(KNOWN_KEY_PANIC), "panicked: {panic}"),
            Ok(Ok(s)) => check_settings(&s, &secrets_of(&env))?,
            Ok(Err(e)) => check_error_text(&e)?,
        }
    }

    #[test]
    fn generated_configs_load_or_name_the_key_at_fault(node in file_config(), env in random_env()) {
        let (yaml, result) = load_node(&node, &env);
        let secrets = secrets_of(&env);
        match result {
            Ok(s) => check_settings(&s, &secrets)?,
            Err(e) => {
                check_error_text(&e)?;
                let problems = match &e {
                    ConfigError::Load(msg) => vec![msg.clone()],
                    ConfigError::Invalid(list) => list.clone(),
                };
                for p in &problems {
                    prop_assert!(names_a_key(p), "{p:?} names no key; config:\n{yaml}");
                }
                let text = e.to_string();
                for secret in secrets {
                    prop_assert!(!text.contains(secret), "a secret shows in {text}");
                }
            }
        }
    }

    #[test]
    fn valid_configs_load_into_exactly_the_described_targets(spec in config_spec()) {
        let dir = tempfile::tempdir().unwrap();
        let (yaml, env) = render_spec(&spec, dir.path());
        let s = match config::load_str(&yaml, &env) {
            Ok(s) => s,
            Err(e) => return Err(TestCaseError::fail(format!("refused: {e}\n{yaml}"))),
        };
        check_against(&spec, &s)?;
        let secrets = spec_secrets(&spec);
        check_settings(&s, &secrets.iter().map(String::as_str).collect::<Vec<_>>())?;
    }

    #[test]
    fn the_minimum_interval_fits_exactly_the_calls(targets in 0usize..1_000_000, per_minute in 1u32..=100_000) {
        let i = scheduler::min_interval(targets, per_minute);
        let per_minute128 = u128::from(per_minute);
        let fits = i.as_nanos() * per_minute128;
        let needs = 60_000_000_000 * targets as u128;
        // Exact up to float rounding: a couple of nanoseconds per call.
        let slack = 2 * per_minute128 + 16;
        prop_assert!(fits + slack >= needs, "{i:?} is too short");
        prop_assert!(fits <= needs + slack, "{i:?} is longer than needed");
        if (60 * targets as u64) % u64::from(per_minute) == 0 {
            prop_assert_eq!(i, Duration::from_secs(60 * targets as u64 / u64::from(per_minute)));
        }
        prop_assert!(scheduler::min_interval(targets + 1, per_minute) >= i);
        prop_assert!(scheduler::min_interval(targets, per_minute + 1) <= i);
        prop_assert_eq!(scheduler::min_interval(targets, 0), Duration::MAX);
    }

    #[test]
    fn yaml_keys_of_any_kind_never_panic(
        key in one_of(&["~", "null", "true", "false", "1.5", ".inf", "[a]", "{a: 1}", "? [a, b]", "!!str x", "x", "7"]),
        nested in any::<bool>(),
    ) {
        let yaml = if nested { format!("poll:\n  {key}: x\n") } else { format!("{key}: x\n") };
        let result = panic_of(|| config::load_str(&yaml, &Env::new()));
        prop_assert!(result.is_ok(), "{yaml:?} panicked: {:?}", result.err());
        if let Ok(r) = result {
            prop_assert!(r.is_err());
        }
    }

    #[test]
    fn indexed_keys_never_panic(
        index in prop_oneof![-1000isize..0, Just(isize::MAX), Just(isize::MAX / 2)],
        from_env in any::<bool>(),
    ) {
        let (yaml, env) = if from_env {
            let env: Env = [(format!("HSS_EXPORTER__ACCOUNTS[{index}]__NAME"), "x".to_string())].into();
            (String::new(), env)
        } else {
            (format!("accounts[{index}]: x\n"), Env::new())
        };
        let result = panic_of(|| config::load_str(&yaml, &env));
        prop_assert!(result.is_ok(), "{yaml:?} {env:?} panicked: {:?}", result.err());
    }

    #[test]
    fn plain_numeric_ids_are_kept_exactly_or_refused_by_name(
        id in prop_oneof!["[0-9]{1,40}", "\\+[0-9]{1,10}", "0x[0-9a-f]{1,8}", "0o[0-7]{1,8}"],
    ) {
        let yaml = format!(
            "accounts:\n  - name: a\n    region: cn-north-4\n    auth: {{ token: {{ token_env: T }} }}\n    projects:\n      - project_id: {id}\n"
        );
        let env: Env = [("T".to_string(), "tok".to_string())].into();
        match config::load_str(&yaml, &env) {
            Ok(s) => prop_assert_eq!(&s.accounts[0].targets[0].project_id, &id),
            Err(e) => prop_assert!(e.to_string().contains("may hold only letters, digits, '-' and '_'"), "{e}"),
        }
    }

    #[test]
    fn every_problem_is_one_line(node in file_config(), env in random_env()) {
        if let (yaml, Err(ConfigError::Invalid(problems))) = load_node(&node, &env) {
            for p in problems {
                prop_assert!(!p.contains(['\n', '\r']), "{p:?}; config:\n{yaml}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Signing and the simulator's verification agree
// ---------------------------------------------------------------------------------------

const AK: &str = "PROPTESTAK000000001";
const SK: &str = "proptest-secret-key-0000000000000000001";

/// For every generated (project ID, enterprise project ID, registry type), a signed request
/// built by the client is accepted by the simulator and answered with that project's counts.
fn check_sim_accepts(ids: impl Strategy<Value = String>, n: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sim = Sim::new();
    sim.add_access_key(AK, SK);
    sim.set_logging(false);
    let server = rt.block_on(sim.start(([127, 0, 0, 1], 0).into())).unwrap();
    let endpoint = Url::parse(&server.url()).unwrap();
    let http = common::http();
    let auth = RequestAuth::Sign {
        access_key: Secret::new(AK),
        secret_key: Secret::new(SK),
        security_token: None,
    };
    let eps = prop::option::of(
        prop::collection::vec(
            any::<char>().prop_filter("not control", |c| !c.is_control()),
            1..=256,
        )
        .prop_map(|v| v.into_iter().collect::<String>())
        .prop_filter("sums every enterprise project", |e| e != "all_granted_eps"),
    );
    let counts = prop::collection::vec((0u64..1_000_000, 0u64..1_000_000), 6);
    let strategy = (
        ids,
        eps,
        prop::option::of(select(RegistryType::ALL.to_vec())),
        counts,
    );
    let mut runner = TestRunner::new(cases(n));
    let result = runner.run(&strategy, |(project, eps, registry_type, counts)| {
        for (t, (f, s)) in RegistryType::ALL.iter().zip(&counts) {
            sim.set_stats(&project, eps.as_deref(), *t, *f, *s);
        }
        let wanted = match registry_type {
            Some(t) => {
                let k = RegistryType::ALL.iter().position(|x| *x == t).unwrap();
                Statistics {
                    fail_num: counts[k].0,
                    success_num: counts[k].1,
                }
            }
            None => Statistics {
                fail_num: counts.iter().map(|c| c.0).sum(),
                success_num: counts.iter().map(|c| c.1).sum(),
            },
        };
        let target = model::Target {
            account: "a".into(),
            region: "cn-north-4".into(),
            project_id: project.clone(),
            enterprise_project_id: eps.clone(),
            registry_type,
        };
        let request = build_request(&endpoint, &target, &auth, SystemTime::now());
        let (status, body) = rt.block_on(async {
            let mut b = http.get(request.url.clone());
            for (k, v) in &request.headers {
                b = b.header(k.as_str(), v.as_str());
            }
            let r = b
                .send()
                .await
                .map_err(|e| TestCaseError::fail(format!("not sent: {e}")))?;
            let status = r.status().as_u16();
            Ok::<_, TestCaseError>((status, r.bytes().await.unwrap_or_default()))
        })?;
        prop_assert_eq!(
            status,
            200,
            "{} -> {}",
            request.url,
            String::from_utf8_lossy(&body)
        );
        let got = decode_statistics(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(got, wanted);
        Ok(())
    });
    drop(server);
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn signed_requests_for_printable_ascii_ids_pass_the_simulators_check() {
    check_sim_accepts(
        "[ -~]{1,64}".prop_filter("no blanks at the ends, no dot segments", |s| {
            s.trim() == s && s != "." && s != ".."
        }),
        48,
    );
}

/// Every project ID the configuration accepts can be requested: signing and the gateway's
/// check agree on it (the config refuses the IDs a path segment or a header would alter).
#[test]
fn signed_requests_for_any_id_the_config_accepts_pass_the_simulators_check() {
    check_sim_accepts(
        "[A-Za-z0-9_-]{1,256}".prop_filter("no dot segments", |s| s != "." && s != ".."),
        32,
    );
}
