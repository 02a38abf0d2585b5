//! The exporter binary, run as an operator runs it: commands that finish, and a process in
//! the background whose log or output is read line by line. Every wait on it is bounded.

use std::net::TcpListener;
use std::process::{ExitStatus, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{bounded, env, eventually, IO_TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_hss-exporter");

/// The longest a command that finishes by itself may run.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary with `args`, the environment of [`env`] and `PATH` only, killed if dropped.
fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .envs(env())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs the binary with `args` to its end and returns what it printed; panics (and kills it)
/// if it runs longer than a minute.
pub async fn run(args: &[&str]) -> Output {
    run_with_env(args, &[]).await
}

/// Like [`run`], with more environment variables (`HTTPS_PROXY`, `SSL_CERT_FILE`): the child's
/// own, never the test process's.
pub async fn run_with_env(args: &[&str], vars: &[(&str, &str)]) -> Output {
    let what = format!("hss-exporter {} to exit", args.join(" "));
    let mut command = command(args);
    command.envs(vars.iter().copied());
    bounded(RUN_TIMEOUT, &what, command.output())
        .await
        .expect("run hss-exporter")
}

/// A port on the loopback interface that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `http://…/metrics` URL the demo prints: the first such word of `line`.
pub fn metrics_url(line: &str) -> Option<String> {
    line.split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/metrics"))
        .map(str::to_string)
}

/// The binary running in the background, killed if dropped. One of its output streams is
/// read line by line as it comes; the other goes nowhere.
pub struct Running {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    reader: JoinHandle<()>,
    /// Every line read so far.
    seen: Vec<String>,
}

impl Running {
    /// Starts the binary with `args` (and the environment of [`env`]), reading its stdout.
    pub fn reading_stdout(args: &[&str]) -> Running {
        Running::start(args, true)
    }

    /// Starts the binary with `args` (and the environment of [`env`]), reading its stderr,
    /// where it logs.
    pub fn reading_stderr(args: &[&str]) -> Running {
        Running::start(args, false)
    }

    fn start(args: &[&str], stdout: bool) -> Running {
        let mut command = command(args);
        let (out, err) = if stdout {
            (Stdio::piped(), Stdio::null())
        } else {
            (Stdio::null(), Stdio::piped())
        };
        let mut child = command
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start hss-exporter");
        let stream: Box<dyn AsyncRead + Send + Unpin> = if stdout {
            Box::new(child.stdout.take().expect("stdout"))
        } else {
            Box::new(child.stderr.take().expect("stderr"))
        };
        let (tx, lines) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            let mut stream = BufReader::new(stream);
            let mut line = Vec::new();
            while stream
                .read_until(b'\n', &mut line)
                .await
                .is_ok_and(|n| n > 0)
            {
                let text = String::from_utf8_lossy(&line);
                let _ = tx.send(text.trim_end_matches(['\r', '\n']).to_string());
                line.clear();
            }
        });
        Running {
            child,
            lines,
            reader,
            seen: Vec::new(),
        }
    }

    fn take_lines(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
    }

    /// The first value `pick` finds in a line, waiting up to `within` for it.
    pub async fn find_line<T>(
        &mut self,
        within: Duration,
        what: &str,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let mut checked = 0;
        eventually(within, what, || {
            self.take_lines();
            let found = self.seen[checked..].iter().find_map(|l| pick(l));
            checked = self.seen.len();
            let exited = self.child.try_wait().ok().flatten();
            let state = format!(
                "{} lines, the last {:?}{}",
                self.seen.len(),
                self.seen.last(),
                exited.map_or(String::new(), |s| format!("; exited: {s}"))
            );
            async move { found.ok_or(state) }
        })
        .await
    }

    /// Sends the signal `name` (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid}: {status}");
    }

    /// Whether it has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("child status").is_none()
    }

    /// Sends SIGTERM and waits up to `within` for the exit; returns the exit status and every
    /// line read.
    pub async fn stop(mut self, within: Duration) -> (ExitStatus, Vec<String>) {
        self.signal("TERM");
        let status = bounded(
            within,
            "hss-exporter to exit after SIGTERM",
            self.child.wait(),
        )
        .await
        .expect("wait for hss-exporter");
        bounded(
            IO_TIMEOUT,
            "the end of hss-exporter's output",
            &mut self.reader,
        )
        .await
        .expect("output reader");
        self.take_lines();
        (status, self.seen)
    }
}
