//! Logging: a `tracing` subscriber writing to stderr, filtered by level, in the formats the
//! Prometheus ecosystem reads: logfmt (`ts=… level=info msg=…`, the default off a terminal)
//! and JSON with the same keys, or `tracing`'s own text on a terminal.

use std::fmt;
use std::io::IsTerminal;
use std::time::SystemTime;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `ts=… level=… target=… msg=… key=value …`, one line per event.
    Logfmt,
    /// One JSON object per line with `ts`, `level`, `target`, `msg` and the event's fields.
    Json,
    /// `tracing`'s own human-readable lines, coloured on a terminal.
    Text,
}

impl LogFormat {
    /// The format when none is asked for: text on a terminal, logfmt for journald, files
    /// and log collectors.
    pub fn default_for_stderr() -> LogFormat {
        if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Logfmt
        }
    }
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A bare word that is not a level: `EnvFilter` would take it for a target name and
    /// silently log nothing.
    #[error("unknown level {0:?} (expected one of {levels})", levels = LEVELS.join(", "))]
    UnknownLevel(String),
    /// A filter directive `tracing` cannot parse.
    #[error("invalid filter directive")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Installs the global subscriber: `level` is a level or a `tracing` filter directive.
pub fn init(level: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Logfmt => builder.event_format(Lines::Logfmt).init(),
        LogFormat::Json => builder.event_format(Lines::Json).init(),
    }
    Ok(())
}

/// The filter of `level`, refusing bare words that are not levels.
fn filter(level: &str) -> Result<tracing_subscriber::EnvFilter, TelemetryError> {
    if !level.contains('=') && !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
        return Err(TelemetryError::UnknownLevel(level.to_string()));
    }
    Ok(tracing_subscriber::EnvFilter::try_new(level)?)
}

/// The two structured line formats; both carry the same keys.
#[derive(Debug, Clone, Copy)]
enum Lines {
    Logfmt,
    Json,
}

impl<S, N> FormatEvent<S, N> for Lines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let line = Line {
            ts: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            level: meta.level().as_str().to_ascii_lowercase(),
            target: meta.target(),
            fields,
        };
        match self {
            Lines::Logfmt => writeln!(writer, "{}", line.logfmt()),
            Lines::Json => writeln!(writer, "{}", line.json()),
        }
    }
}

/// One event, ready to be written.
struct Line<'a> {
    ts: String,
    level: String,
    target: &'a str,
    fields: Fields,
}

impl Line<'_> {
    fn logfmt(&self) -> String {
        let mut out = format!(
            "ts={} level={} target={} msg={}",
            self.ts,
            self.level,
            logfmt_value(self.target),
            logfmt_value(&self.fields.message)
        );
        for (key, value) in &self.fields.others {
            out.push(' ');
            out.push_str(&logfmt_key(key));
            out.push('=');
            out.push_str(&logfmt_value(&value.to_string()));
        }
        out
    }

    fn json(&self) -> String {
        let mut object = serde_json::Map::new();
        object.insert("ts".into(), self.ts.clone().into());
        object.insert("level".into(), self.level.clone().into());
        object.insert("target".into(), self.target.into());
        object.insert("msg".into(), self.fields.message.clone().into());
        for (key, value) in &self.fields.others {
            // A field named like one of the fixed keys must not overwrite it.
            let key = if object.contains_key(key) {
                format!("field_{key}")
            } else {
                key.clone()
            };
            object.insert(key, value.json());
        }
        serde_json::Value::Object(object).to_string()
    }
}

/// An event's message and its other fields, in order.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(String, FieldValue)>,
}

/// A field's value, typed where JSON can keep the type.
enum FieldValue {
    Text(String),
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
}

impl FieldValue {
    fn json(&self) -> serde_json::Value {
        match self {
            FieldValue::Text(s) => s.clone().into(),
            FieldValue::Bool(b) => (*b).into(),
            FieldValue::I64(n) => (*n).into(),
            FieldValue::U64(n) => (*n).into(),
            FieldValue::F64(n) => serde_json::Number::from_f64(*n)
                .map_or_else(|| n.to_string().into(), serde_json::Value::Number),
        }
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Text(s) => f.write_str(s),
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::I64(n) => write!(f, "{n}"),
            FieldValue::U64(n) => write!(f, "{n}"),
            FieldValue::F64(n) => write!(f, "{n}"),
        }
    }
}

impl Fields {
    fn push(&mut self, field: &Field, value: FieldValue) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.others.push((field.name().to_string(), value));
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, FieldValue::Text(value.to_string()));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, FieldValue::F64(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, FieldValue::Text(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, FieldValue::Text(format!("{value:?}")));
    }
}

/// A logfmt key: the characters a logfmt reader takes in a key, others replaced by `_`.
fn logfmt_key(key: &str) -> String {
    let key: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '=' && c != '"' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if key.is_empty() {
        "_".into()
    } else {
        key
    }
}

/// A logfmt value: bare when it can be, else quoted with `\"`, `\\` and control characters
/// escaped, so that every event stays on one line.
fn logfmt_value(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '=' && c != '"' && c != '\\');
    if bare {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                use fmt::Write as _;
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str, others: Vec<(&str, FieldValue)>) -> Line<'static> {
        Line {
            ts: "2026-11-30T12:00:00.000Z".into(),
            level: "info".into(),
            target: "hss_exporter::app",
            fields: Fields {
                message: message.into(),
                others: others
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            },
        }
    }

    #[test]
    fn logfmt_lines_carry_ts_level_and_msg_and_quote_what_needs_it() {
        let l = line(
            "exporter started",
            vec![
                ("addr", FieldValue::Text("127.0.0.1:9943".into())),
                ("targets", FieldValue::U64(4)),
                ("why", FieldValue::Text("a \"quoted\"\nline".into())),
                ("empty", FieldValue::Text(String::new())),
            ],
        );
        assert_eq!(
            l.logfmt(),
            r#"ts=2026-11-30T12:00:00.000Z level=info target=hss_exporter::app msg="exporter started" addr=127.0.0.1:9943 targets=4 why="a \"quoted\"\nline" empty="""#
        );
    }

    #[test]
    fn json_lines_carry_the_same_keys_and_keep_types() {
        let l = line(
            "polled",
            vec![
                ("fail_num", FieldValue::U64(2)),
                ("msg", FieldValue::Text("a field named msg".into())),
                ("ok", FieldValue::Bool(true)),
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&l.json()).unwrap();
        assert_eq!(v["ts"], "2026-11-30T12:00:00.000Z");
        assert_eq!(v["level"], "info");
        assert_eq!(v["msg"], "polled");
        assert_eq!(v["fail_num"], 2);
        assert_eq!(v["ok"], true);
        assert_eq!(v["field_msg"], "a field named msg");
    }

    #[test]
    fn refuses_words_that_are_not_levels() {
        assert!(filter("info").is_ok());
        assert!(filter("hss_exporter=debug").is_ok());
        assert_eq!(
            filter("verbose").unwrap_err().to_string(),
            r#"unknown level "verbose" (expected one of off, error, warn, info, debug, trace)"#
        );
    }
}
