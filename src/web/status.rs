//! The status page: every target with its labels, state, last values, last success, last
//! error and next poll.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::metrics::Store;

/// The page as HTML.
pub(super) fn page(store: &Store, telemetry_path: &str) -> String {
    let now = SystemTime::now();
    let mut html = String::from(concat!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>hss-exporter</title>",
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}",
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}",
        ".up{color:#070}.down{color:#b00}</style></head><body>",
        "<h1>hss-exporter</h1><p>",
    ));
    let _ = write!(
        html,
        "<a href=\"{}\">Metrics</a> · version {}",
        escape(telemetry_path),
        env!("CARGO_PKG_VERSION")
    );
    html.push_str(concat!(
        "</p><table><tr><th>account</th><th>region</th><th>project_id</th>",
        "<th>enterprise_project_id</th><th>registry_type</th><th>up</th><th>fail</th>",
        "<th>success</th><th>last success</th><th>last error</th><th>next poll</th></tr>"
    ));
    for (target, s) in store.statuses() {
        html.push_str("<tr>");
        for label in target.label_values() {
            let _ = write!(html, "<td>{}</td>", escape(label));
        }
        let (class, up) = match s.up {
            Some(true) => ("up", "up"),
            Some(false) => ("down", "down"),
            None => ("", "pending"),
        };
        let (fail, success) = match (s.last, s.stale) {
            (Some(v), false) => (v.fail_num.to_string(), v.success_num.to_string()),
            (_, true) => ("stale".into(), "stale".into()),
            _ => (String::new(), String::new()),
        };
        let _ = write!(
            html,
            "<td class=\"{class}\">{up}</td><td>{fail}</td><td>{success}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            s.last_success.map_or_else(|| "never".into(), |t| ago(now, t)),
            escape(s.last_error.as_deref().unwrap_or("")),
            s.next_poll.map(|t| until(now, t)).unwrap_or_default(),
        );
    }
    html.push_str("</table></body></html>\n");
    html
}

fn ago(now: SystemTime, t: SystemTime) -> String {
    let secs = now.duration_since(t).unwrap_or_default().as_secs();
    format!(
        "{} ({} ago)",
        humantime::format_rfc3339_seconds(t),
        humantime::format_duration(Duration::from_secs(secs))
    )
}

fn until(now: SystemTime, t: SystemTime) -> String {
    match t.duration_since(now) {
        Ok(d) => format!(
            "{} (in {})",
            humantime::format_rfc3339_seconds(t),
            humantime::format_duration(Duration::from_secs(d.as_secs()))
        ),
        Err(_) => "due now".into(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
