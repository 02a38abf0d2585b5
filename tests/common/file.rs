//! A configuration file on disk, in a temporary directory of its own next to the secret
//! files it names.

use std::path::PathBuf;

/// An `{API}` that nothing answers on, for configurations that are only checked.
pub const NO_API: &str = "http://127.0.0.1:1";

/// `config.yaml` in a temporary directory that is removed on drop. In what
/// [`ConfigFile::write`] writes, `{API}` stands for the API's URL and `{DIR}` for the
/// directory, so that `secret_key_file: "{DIR}/sk"` names a file made with
/// [`ConfigFile::write_file`].
pub struct ConfigFile {
    dir: tempfile::TempDir,
    api: String,
}

impl ConfigFile {
    /// An empty directory; `api` is the URL `{API}` stands for (the simulator's, or
    /// [`NO_API`]).
    pub fn new(api: &str) -> ConfigFile {
        ConfigFile {
            dir: tempfile::tempdir().expect("temporary directory"),
            api: api.to_string(),
        }
    }

    /// The configuration file's path.
    pub fn path(&self) -> PathBuf {
        self.file("config.yaml")
    }

    /// The configuration file's path as a command-line argument.
    pub fn arg(&self) -> String {
        self.path().display().to_string()
    }

    /// The path of `name` in the same directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `contents` to `name` in the same directory (a secret file, say); returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.file(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Writes the configuration, `{API}` and `{DIR}` replaced.
    pub fn write(&self, yaml: &str) {
        let yaml = yaml
            .replace("{API}", &self.api)
            .replace("{DIR}", &self.dir.path().display().to_string());
        self.write_file("config.yaml", &yaml);
    }
}
