//! `--web.config.file`: the Prometheus exporter-toolkit web configuration format, read
//! strictly (unknown keys are refused with their path). What it means is [`super::security`]'s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::yaml::{self, Overrides};

/// Why a web config file was refused; names the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WebConfigError(pub(super) String);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebConfigFile {
    #[serde(default)]
    pub(super) tls_server_config: Option<TlsSection>,
    #[serde(default)]
    pub(super) http_server_config: Option<HttpSection>,
    #[serde(default)]
    pub(super) basic_auth_users: HashMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSection {
    pub(super) cert_file: PathBuf,
    pub(super) key_file: PathBuf,
    #[serde(default)]
    pub(super) client_auth_type: Option<String>,
    #[serde(default)]
    pub(super) client_ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) min_version: Option<String>,
    #[serde(default)]
    pub(super) max_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpSection {
    #[serde(default)]
    pub(super) headers: HashMap<String, String>,
}

impl WebConfigFile {
    /// Reads `path`; errors start with the path.
    pub(super) fn read(path: &Path) -> Result<WebConfigFile, WebConfigError> {
        let err = |m: String| WebConfigError(format!("{}: {m}", path.display()));
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read the file: {e}")))?;
        yaml::deserialize(&text, &Overrides::default()).map_err(err)
    }
}

/// Resolves a path in the web config relative to the file, as the exporter-toolkit does.
pub(super) fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
