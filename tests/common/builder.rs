//! One builder for the tests' configuration files: the YAML an operator would write, with
//! `{API}` standing for the simulator's URL.

use std::fmt::Write as _;

/// `ak_sk` with the key pair of [`super::env`].
pub const AK_SK: &str = "{ ak_sk: { access_key_env: HSS_AK, secret_key_env: HSS_SK } }";
/// `token` with the static token of [`super::env`].
pub const TOKEN: &str = "{ token: { token_env: HSS_TOKEN } }";
/// `iam_password` of the simulator's user `acme/ops`, IAM on the simulator.
pub const IAM: &str = "{ iam_password: { domain: acme, user: ops, password_env: HSS_PASSWORD, iam_endpoint: \"{API}\" } }";

/// Every registry type, for [`Account::project`].
pub const ALL_TYPES: &[&str] = &[
    "Harbor",
    "Jfrog",
    "SwrPrivate",
    "SwrShared",
    "SwrEnterprise",
    "Other",
];

/// A configuration file under construction.
#[derive(Debug, Clone)]
pub struct Config {
    interval: String,
    timeout: String,
    stale_after: String,
    global_rate_limit: Option<u32>,
    accounts: Vec<Account>,
}

impl Config {
    /// `poll: { interval: 1m, timeout: 2s, stale_after: 5m }` and no account yet.
    pub fn new() -> Config {
        Config {
            interval: "1m".into(),
            timeout: "2s".into(),
            stale_after: "5m".into(),
            global_rate_limit: None,
            accounts: Vec::new(),
        }
    }

    /// `poll.interval`, `poll.timeout` and `poll.stale_after`.
    pub fn poll(mut self, interval: &str, timeout: &str, stale_after: &str) -> Self {
        self.interval = interval.into();
        self.timeout = timeout.into();
        self.stale_after = stale_after.into();
        self
    }

    /// `poll.rate_limit_per_minute`, the cap across accounts.
    pub fn global_rate_limit(mut self, n: u32) -> Self {
        self.global_rate_limit = Some(n);
        self
    }

    /// One more account.
    pub fn account(mut self, account: Account) -> Self {
        self.accounts.push(account);
        self
    }

    /// The YAML text.
    pub fn yaml(&self) -> String {
        let mut out = format!(
            "poll: {{ interval: {}, timeout: {}, stale_after: {}",
            self.interval, self.timeout, self.stale_after
        );
        if let Some(n) = self.global_rate_limit {
            let _ = write!(out, ", rate_limit_per_minute: {n}");
        }
        out.push_str(" }\naccounts:\n");
        for a in &self.accounts {
            a.write(&mut out);
        }
        out
    }
}

/// One entry of `accounts:`.
#[derive(Debug, Clone)]
pub struct Account {
    name: String,
    region: String,
    endpoint: String,
    rate_limit: Option<u32>,
    auth: String,
    /// Further keys of the account, as YAML lines (`tls: { ca_file: ... }`).
    extra: Vec<String>,
    projects: Vec<String>,
}

/// Account `name` in `cn-north-4` on the simulator, signing with [`AK_SK`], no project yet.
pub fn account(name: &str) -> Account {
    Account {
        name: name.into(),
        region: "cn-north-4".into(),
        endpoint: "{API}".into(),
        rate_limit: None,
        auth: AK_SK.into(),
        extra: Vec::new(),
        projects: Vec::new(),
    }
}

impl Account {
    /// The `region` label.
    pub fn region(mut self, region: &str) -> Self {
        self.region = region.into();
        self
    }

    /// The HSS endpoint (`{API}`: the simulator).
    pub fn endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = endpoint.into();
        self
    }

    /// `rate_limit_per_minute`.
    pub fn rate(mut self, per_minute: u32) -> Self {
        self.rate_limit = Some(per_minute);
        self
    }

    /// `auth:` as a YAML flow mapping, e.g. [`TOKEN`].
    pub fn auth(mut self, auth: &str) -> Self {
        self.auth = auth.into();
        self
    }

    /// One more key of the account, as a YAML line: `with("proxy_url: http://...")`.
    pub fn with(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    /// `discover:` as a YAML flow mapping, e.g. `{ regions: [cn-north-4], refresh: 5m }`,
    /// with IAM on the simulator (its endpoint written with `/v3`, as stacks write it).
    pub fn discover(mut self, discover: &str) -> Self {
        self.extra.push(format!("discover: {discover}"));
        self.extra.push("iam_endpoint: \"{API}/v3\"".into());
        self
    }

    /// A project with these registry types (none: all types summed).
    pub fn project(self, project_id: &str, types: &[&str]) -> Self {
        self.project_in(project_id, None, types)
    }

    /// A project in an enterprise project.
    pub fn project_in(self, project_id: &str, eps: Option<&str>, types: &[&str]) -> Self {
        self.project_full(project_id, eps, types, false)
    }

    /// A project whose registries are also listed one by one when `registries` is true.
    pub fn project_with(self, project_id: &str, types: &[&str], registries: bool) -> Self {
        self.project_full(project_id, None, types, registries)
    }

    /// A project with every option.
    pub fn project_full(
        mut self,
        project_id: &str,
        eps: Option<&str>,
        types: &[&str],
        registries: bool,
    ) -> Self {
        let mut p = format!("      - project_id: {project_id}\n");
        if let Some(eps) = eps {
            let _ = writeln!(p, "        enterprise_project_id: {eps:?}");
        }
        if !types.is_empty() {
            let _ = writeln!(p, "        registry_types: [{}]", types.join(", "));
        }
        if registries {
            p.push_str("        registries: true\n");
        }
        self.projects.push(p);
        self
    }

    fn write(&self, out: &mut String) {
        let _ = writeln!(out, "  - name: {}", self.name);
        let _ = writeln!(out, "    region: {}", self.region);
        let _ = writeln!(out, "    endpoint: {:?}", self.endpoint);
        if let Some(n) = self.rate_limit {
            let _ = writeln!(out, "    rate_limit_per_minute: {n}");
        }
        let _ = writeln!(out, "    auth: {}", self.auth);
        for line in &self.extra {
            let _ = writeln!(out, "    {line}");
        }
        if !self.projects.is_empty() {
            out.push_str("    projects:\n");
        }
        for p in &self.projects {
            out.push_str(p);
        }
    }
}
