//! Build script: the git revision for `hss_exporter_build_info{revision}`. The
//! `HSS_EXPORTER_REVISION` environment variable wins (container builds pass it, as their
//! context has no `.git`); otherwise a build from a checkout records its commit, and any
//! other build says `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HSS_EXPORTER_REVISION");
    if std::env::var_os("HSS_EXPORTER_REVISION").is_some() {
        return;
    }
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let Some(revision) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return;
    };
    // Build again when the checkout moves to another commit: its HEAD (in a worktree's own
    // git directory) or the branch it points to (in the common one) changes.
    if let (Some(dir), Some(common)) = (
        git(&["rev-parse", "--git-dir"]),
        git(&["rev-parse", "--git-common-dir"]),
    ) {
        let (dir, common) = (Path::new(&dir), Path::new(&common));
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        println!(
            "cargo:rerun-if-changed={}",
            common.join("packed-refs").display()
        );
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", common.join(branch).display());
        }
    }
    println!("cargo:rustc-env=HSS_EXPORTER_REVISION={revision}");
}
