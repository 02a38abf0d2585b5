//! Configuration files into serde types: strict YAML (every scalar keeps its text, duplicate
//! keys and alias bombs refused), then the `config` crate, which turns the text of each
//! scalar into the type the field asks for and lays environment overrides on top. Errors
//! name the key path. The exporter's configuration and the web configuration both read
//! through here.

mod strict;

/// The strict YAML reader alone, for files read key by key (the web configuration).
pub use strict::to_json;

/// Environment overrides laid over a file: `{prefix}__SECTION__KEY=value`.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The variables' common prefix, without the `__` that follows it.
    pub prefix: &'static str,
    /// (variable name, value); every name is `{prefix}__` and plain names joined by `__`
    /// (see [`is_plain_name`]).
    pub vars: Vec<(String, String)>,
}

/// YAML text, with `overrides` on top, into `T`. Errors name the key path.
pub fn deserialize<T: serde::de::DeserializeOwned>(
    text: &str,
    overrides: &Overrides,
) -> Result<T, String> {
    let json = strict::to_json(text)?;
    let Some(top) = json.as_object() else {
        return Err("the file must be a mapping of keys, not a single value or a list".into());
    };
    // The config crate reads top-level keys and override names as paths (`a.b[3]`); only
    // plain names may reach it.
    if let Some(key) = top.keys().find(|k| !is_plain_name(k)) {
        return Err(format!("{key:?}: unknown field"));
    }
    let vars: config::Map<String, String> = overrides.vars.iter().cloned().collect();
    let build = || {
        let builder = config::Config::builder().add_source(config::File::from_str(
            &json.to_string(),
            config::FileFormat::Json,
        ));
        let builder = if vars.is_empty() {
            builder
        } else {
            builder.add_source(
                config::Environment::with_prefix(overrides.prefix)
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(vars.clone())),
            )
        };
        builder.build()
    };
    // Belt and braces: the input was checked above, but a parser panic must never take the
    // exporter down with it (a reload runs inside the live process).
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
        .map_err(|_| "the configuration could not be parsed".to_string())?
        .map_err(|e| e.to_string())?;
    serde_path_to_error::deserialize(built).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." || path.is_empty() {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// A key the config crate takes literally: lower-case letters, digits and `_`.
pub fn is_plain_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
