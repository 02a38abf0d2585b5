//! Reading the configuration: a file (or text), with `HSS_EXPORTER__` environment overrides,
//! validated whole; and [`Source`], the file plus command-line overrides that start-up and
//! every reload read again.

use std::path::{Path, PathBuf};

use super::{file::FileConfig, validate, ConfigError, Env, Settings, ENV_PREFIX};
use crate::yaml::{self, is_plain_name, Overrides};

/// Loads and validates a file, with `HSS_EXPORTER__` overrides taken from `env`. Every
/// problem line starts with the file's path.
pub fn load_file(path: &Path, env: &Env) -> Result<Settings, ConfigError> {
    let at = |line: &str| format!("{}: {line}", path.display());
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::Load(at(&format!("cannot read the file: {e}"))))?;
    load_str(&text, env).map_err(|e| match e {
        ConfigError::Load(line) => ConfigError::Load(at(&line)),
        ConfigError::Invalid(lines) => ConfigError::Invalid(lines.iter().map(|l| at(l)).collect()),
    })
}

/// Loads and validates YAML text, with `HSS_EXPORTER__` overrides taken from `env`.
pub fn load_str(text: &str, env: &Env) -> Result<Settings, ConfigError> {
    let overrides = overrides(env).map_err(ConfigError::Load)?;
    let file: FileConfig = yaml::deserialize(text, &overrides).map_err(ConfigError::Load)?;
    validate(&file, env)
}

/// The `HSS_EXPORTER__` variables of `env`; a malformed name is refused, not ignored.
fn overrides(env: &Env) -> Result<Overrides, String> {
    let mut vars = Vec::new();
    for (name, value) in env {
        let Some(path) = name.strip_prefix(&format!("{ENV_PREFIX}__")) else {
            continue;
        };
        if !path
            .split("__")
            .all(|s| is_plain_name(&s.to_ascii_lowercase()))
        {
            return Err(format!(
                "{name}: not a valid override (expected {ENV_PREFIX}__SECTION__KEY, e.g. {ENV_PREFIX}__POLL__INTERVAL; the accounts list cannot be overridden)"
            ));
        }
        vars.push((name.clone(), value.clone()));
    }
    Ok(Overrides {
        prefix: ENV_PREFIX,
        vars,
    })
}

/// Where the configuration comes from: the file, the process environment, and the
/// command line's `--web.listen-address`. Read at start-up and again at every reload.
#[derive(Debug, Clone)]
pub struct Source {
    /// The YAML file.
    pub path: PathBuf,
    /// Every `--web.listen-address`; when any is given, they replace `web.listen_address`.
    pub listen_addresses: Vec<String>,
}

impl Source {
    /// Reads the file with the process environment.
    pub fn load(&self) -> Result<Settings, ConfigError> {
        let env: Env = std::env::vars().collect();
        self.load_with(&env)
    }

    /// Reads the file with `env` as the environment.
    pub fn load_with(&self, env: &Env) -> Result<Settings, ConfigError> {
        let mut settings = load_file(&self.path, env)?;
        if !self.listen_addresses.is_empty() {
            settings.listen_addresses = self
                .listen_addresses
                .iter()
                .map(|addr| {
                    addr.parse().map_err(|()| {
                        ConfigError::Invalid(vec![format!(
                            "--web.listen-address: invalid address {addr:?} (expected host:port or :port)"
                        )])
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(settings)
    }
}
