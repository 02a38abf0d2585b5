//! YAML to JSON for the config crate, keeping every scalar's text exactly as written, so
//! an unquoted ID such as `01` or `11111111111111111111111111111111` stays what it says.
//! It also refuses what the config crate's own YAML reader would panic on (keys that are
//! not names), duplicate keys, and alias bombs.

use std::collections::HashMap;

use serde_json::{Map, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Values built at most, aliases expanded: a configuration is a few thousand.
const MAX_NODES: usize = 1_000_000;
const MAX_DEPTH: usize = 64;

/// Parses one YAML document into JSON; scalars become strings (nulls stay null).
pub fn to_json(text: &str) -> Result<Value, String> {
    let mut builder = Builder::default();
    Parser::new_from_str(text)
        .load(&mut builder, false)
        .map_err(|e| format!("invalid YAML: {e}"))?;
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or_else(|| Value::Object(Map::new())))
}

/// An open list or mapping: its items so far, its anchor, and how many values it holds
/// (itself and everything inside), which is what an alias to it costs.
enum Frame {
    Seq(Vec<Value>, usize, usize),
    Map(Map<String, Value>, Option<String>, usize, usize),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    root: Option<Value>,
    nodes: usize,
    error: Option<String>,
}

impl Builder {
    fn fail(&mut self, mark: Marker, msg: &str) {
        if self.error.is_none() {
            self.error = Some(format!("line {}: {msg}", mark.line()));
        }
    }

    fn add(&mut self, value: Value, size: usize, anchor: usize, mark: Marker) {
        self.nodes += size;
        if self.nodes > MAX_NODES {
            return self.fail(
                mark,
                &format!("more than {MAX_NODES} values (aliases included)"),
            );
        }
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq(items, _, total)) => {
                *total += size;
                items.push(value);
            }
            Some(Frame::Map(map, key, _, total)) => match key.take() {
                Some(k) if map.contains_key(&k) => {
                    self.fail(mark, &format!("key {k:?} appears twice"));
                }
                Some(k) => {
                    *total += size;
                    map.insert(k, value);
                }
                None => match value {
                    Value::String(k) => *key = Some(k),
                    Value::Null => self.fail(mark, "a key is empty or null"),
                    _ => self.fail(mark, "a key must be a name, not a list or a mapping"),
                },
            },
        }
    }

    /// Adds a finished list or mapping whose `total` values are already counted.
    fn close(&mut self, value: Value, total: usize, anchor: usize, mark: Marker) {
        self.nodes -= total - 1;
        self.add(value, total, anchor, mark);
    }

    fn open(&mut self, frame: Frame, mark: Marker) {
        if self.stack.len() >= MAX_DEPTH {
            return self.fail(mark, &format!("nested more than {MAX_DEPTH} levels deep"));
        }
        self.stack.push(frame);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let null = style == TScalarStyle::Plain
                    && tag.is_none()
                    && matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL");
                let value = if null {
                    Value::Null
                } else {
                    Value::String(text)
                };
                self.add(value, 1, anchor, mark);
            }
            Event::SequenceStart(anchor, _) => self.open(Frame::Seq(Vec::new(), anchor, 1), mark),
            Event::MappingStart(anchor, _) => {
                self.open(Frame::Map(Map::new(), None, anchor, 1), mark);
            }
            // The items were counted as they came; the whole is counted again only when an
            // alias copies it.
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(items, anchor, total)) => {
                    self.close(Value::Array(items), total, anchor, mark);
                }
                Some(Frame::Map(map, _, anchor, total)) => {
                    self.close(Value::Object(map), total, anchor, mark);
                }
                None => self.fail(mark, "unbalanced YAML"),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some((value, size)) => self.add(value, size, 0, mark),
                None => self.fail(mark, "alias to an unknown anchor"),
            },
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::fmt::Write as _;

    #[test]
    fn keeps_scalar_text_exactly() {
        let v = to_json(
            "a: 01\nb: 11111111111111111111111111111111\nc: '7'\nd: ~\ne:\nf: [0x1F, +5, 1.50]\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"a": "01", "b": "11111111111111111111111111111111", "c": "7", "d": null, "e": null, "f": ["0x1F", "+5", "1.50"]})
        );
        assert_eq!(to_json("").unwrap(), json!({}));
        assert_eq!(
            to_json("x: &a {k: v}\ny: *a\n").unwrap(),
            json!({"x": {"k": "v"}, "y": {"k": "v"}})
        );
    }

    #[test]
    fn refuses_what_would_be_ambiguous_or_explode() {
        for (yaml, wanted) in [
            ("~: x", "line 1: a key is empty or null"),
            ("[a]: x", "a key must be a name"),
            ("a: 1\na: 2", "key \"a\" appears twice"),
            ("a: *nope", "unknown anchor"),
            ("a: [1, 2", "invalid YAML"),
        ] {
            let e = to_json(yaml).unwrap_err();
            assert!(e.contains(wanted), "{yaml}: {e}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(to_json(&deep)
            .unwrap_err()
            .contains("nested more than 64 levels"));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let aliases = vec![format!("*a{}", i - 1); 10].join(", ");
            let _ = writeln!(bomb, "a{i}: &a{i} [{aliases}]");
        }
        assert!(to_json(&bomb)
            .unwrap_err()
            .contains("more than 1000000 values"));
    }
}
