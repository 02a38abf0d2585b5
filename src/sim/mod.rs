//! A simulated HSS + IAM API on loopback, for the demo and the tests. It checks AK/SK
//! signatures and tokens as the gateway does (401 `APIGW.0301`), answers statistics per
//! project and registry type, can enforce a per-caller rate limit (429 `APIGW.0308`), and
//! injects faults. Every request is logged for tests to inspect.

mod body;
mod faults;
mod gateway;
mod metadata;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use body::SimBody;
pub use faults::{Fault, FaultRule};
pub use metadata::AGENCY_CALLER;

use crate::hss::signer;
use crate::model::{Registry, RegistryStatus, RegistryType, Statistics};
use body::{error, json};
use gateway::authenticate;

const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const MAX_REQUEST_BODY: usize = 64 * 1024;

/// Which API a logged request went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// The HSS statistics route.
    Hss,
    /// IAM: tokens and the project listing.
    Iam,
    /// The metadata service (`query` holds the path).
    Metadata,
}

/// One request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct LogEntry {
    /// When it arrived (tokio time, so paused tests can measure windows).
    pub at: Instant,
    /// Which API.
    pub service: Service,
    /// The AK, the user (`domain/user`) or the static token's owner; empty when unknown.
    pub caller: String,
    /// The project in the path (HSS) or the token's scope (IAM).
    pub project_id: String,
    /// The request's path.
    pub path: String,
    /// The raw query string.
    pub query: String,
    /// The status answered.
    pub status: u16,
}

struct User {
    domain: String,
    name: String,
    password: String,
}

struct Issued {
    caller: String,
    project_id: String,
    expires: Instant,
}

#[derive(Default)]
struct State {
    access_keys: HashMap<String, String>,
    users: Vec<User>,
    static_tokens: HashMap<String, String>,
    issued: HashMap<String, Issued>,
    token_lifetime: Option<Duration>,
    /// (`project_id`, `enterprise_project_id`, type) → counts.
    stats: BTreeMap<(String, String, RegistryType), Statistics>,
    /// IAM's projects: (id, name, enabled), in the order listed.
    iam_projects: Vec<(String, String, bool)>,
    /// (`project_id`, `enterprise_project_id`) → registries, in the order listed.
    registries: BTreeMap<(String, String), Vec<Registry>>,
    rate_limit_per_minute: Option<u32>,
    windows: HashMap<String, VecDeque<Instant>>,
    faults: Vec<FaultRule>,
    log: Vec<LogEntry>,
    /// Off for long runs (benchmarks, the demo), where the log would only grow.
    no_log: bool,
    counter: u64,
    /// The metadata service and the temporary keys it handed out.
    metadata: metadata::Metadata,
}

/// The simulated API's state; clone it freely, all clones share it.
#[derive(Clone, Default)]
pub struct Sim {
    state: Arc<Mutex<State>>,
}

impl Sim {
    /// A simulator that knows no key, user or count yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An AK/SK pair the gateway accepts signatures of.
    pub fn add_access_key(&self, ak: &str, sk: &str) {
        self.state().access_keys.insert(ak.into(), sk.into());
    }

    /// An IAM user that may obtain tokens with its password.
    pub fn add_user(&self, domain: &str, name: &str, password: &str) {
        self.state().users.push(User {
            domain: domain.into(),
            name: name.into(),
            password: password.into(),
        });
    }

    /// A token valid for every project until revoked, owned by `caller`.
    pub fn add_token(&self, token: &str, caller: &str) {
        self.state()
            .static_tokens
            .insert(token.into(), caller.into());
    }

    /// How long IAM tokens issued from now on live.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().token_lifetime = Some(lifetime);
    }

    /// Makes every issued IAM token invalid (as after a password change).
    pub fn revoke_issued_tokens(&self) {
        self.state().issued.clear();
    }

    /// Sets the counts of one project, enterprise project (`None`: the default, `"0"`) and type.
    pub fn set_stats(
        &self,
        project_id: &str,
        eps: Option<&str>,
        t: RegistryType,
        fail_num: u64,
        success_num: u64,
    ) {
        self.state().stats.insert(
            (project_id.into(), eps.unwrap_or("0").into(), t),
            Statistics {
                fail_num,
                success_num,
            },
        );
    }

    /// The counts of one project, enterprise project and type, if set.
    pub fn stats(
        &self,
        project_id: &str,
        eps: Option<&str>,
        t: RegistryType,
    ) -> Option<Statistics> {
        self.state()
            .stats
            .get(&(project_id.into(), eps.unwrap_or("0").into(), t))
            .copied()
    }

    /// A project IAM lists for every caller (`GET /v3/auth/projects`); replaces one with the
    /// same ID.
    pub fn put_iam_project(&self, id: &str, name: &str, enabled: bool) {
        let mut s = self.state();
        match s.iam_projects.iter_mut().find(|p| p.0 == id) {
            Some(p) => *p = (id.into(), name.into(), enabled),
            None => s.iam_projects.push((id.into(), name.into(), enabled)),
        }
    }

    /// Removes a project from IAM's listing.
    pub fn remove_iam_project(&self, id: &str) {
        self.state().iam_projects.retain(|p| p.0 != id);
    }

    /// Sets the registries of one project and enterprise project (`None`: the default, `"0"`),
    /// listed in this order.
    pub fn set_registries(&self, project_id: &str, eps: Option<&str>, registries: Vec<Registry>) {
        self.state()
            .registries
            .insert((project_id.into(), eps.unwrap_or("0").into()), registries);
    }

    /// Adds a registry, or replaces the one with its ID, in one project and enterprise project.
    pub fn put_registry(&self, project_id: &str, eps: Option<&str>, registry: Registry) {
        let mut s = self.state();
        let list = s
            .registries
            .entry((project_id.into(), eps.unwrap_or("0").into()))
            .or_default();
        match list.iter_mut().find(|r| r.id == registry.id) {
            Some(r) => *r = registry,
            None => list.push(registry),
        }
    }

    /// Removes the registry with `id` from every enterprise project of a project.
    pub fn remove_registry(&self, project_id: &str, id: &str) {
        for ((p, _), list) in &mut self.state().registries {
            if p == project_id {
                list.retain(|r| r.id != id);
            }
        }
    }

    /// The registries of one project and enterprise project, in the order listed.
    pub fn registries(&self, project_id: &str, eps: Option<&str>) -> Vec<Registry> {
        self.state()
            .registries
            .get(&(project_id.into(), eps.unwrap_or("0").into()))
            .cloned()
            .unwrap_or_default()
    }

    /// Enforces at most `n` accepted calls per caller in any 60 s; `None` lifts the limit.
    pub fn set_rate_limit(&self, n: Option<u32>) {
        self.state().rate_limit_per_minute = n;
    }

    /// Adds a fault rule; the first matching rule fires.
    pub fn add_fault(&self, rule: FaultRule) {
        self.state().faults.push(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Every request so far (unless logging is off).
    pub fn log(&self) -> Vec<LogEntry> {
        self.state().log.clone()
    }

    /// Stops (or restarts) recording requests; the log is kept for tests, where runs are short.
    pub fn set_logging(&self, on: bool) {
        let mut s = self.state();
        s.no_log = !on;
        if !on {
            s.log = Vec::new();
        }
    }

    /// Binds `addr` and serves until the returned server is dropped or shut down.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<SimServer> {
        self.serve(addr, None).await
    }

    /// Like [`Sim::start`], over HTTPS with `tls` (a private CA's certificate, say).
    pub async fn start_tls(
        &self,
        addr: SocketAddr,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> std::io::Result<SimServer> {
        let source: crate::server::TlsSource = Arc::new(move || Some(tls.clone()));
        self.serve(addr, Some(source)).await
    }

    async fn serve(
        &self,
        addr: SocketAddr,
        tls: Option<crate::server::TlsSource>,
    ) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let sim = self.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(crate::server::serve(
            listener,
            cancel.clone(),
            tls,
            move |req| {
                let sim = sim.clone();
                async move { sim.handle(req).await }
            },
        ));
        Ok(SimServer {
            addr,
            scheme,
            cancel,
            task,
        })
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<SimBody> {
        let (parts, body) = req.into_parts();
        let body = match http_body_util::Limited::new(body, MAX_REQUEST_BODY)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return error(400, "APIGW.0201", "request body too large or broken", ""),
        };
        let path = parts.uri.path().to_string();
        if path == "/v3/auth/tokens" && parts.method == Method::POST {
            return self.issue_token(&body);
        }
        if let Some(response) = self.metadata_route(&parts.method, &path, &parts.headers) {
            return response;
        }
        if path == "/v3/auth/projects" && parts.method == Method::GET {
            return self.list_projects(&parts, &body).await;
        }
        let segments: Vec<&str> = path.split('/').collect();
        match segments.as_slice() {
            ["", "v5", project, "image", "registries", "statistics"]
                if parts.method == Method::GET =>
            {
                let project = signer::decode(project);
                self.hss(&parts, &body, &project, false).await
            }
            ["", "v5", project, "image", "registries"] if parts.method == Method::GET => {
                let project = signer::decode(project);
                self.hss(&parts, &body, &project, true).await
            }
            _ => error(
                404,
                "APIGW.0101",
                "The API does not exist or has not been published in the environment",
                "",
            ),
        }
    }

    fn request_id(&self) -> String {
        let mut s = self.state();
        s.counter += 1;
        format!("sim-{:08x}", s.counter)
    }

    /// An HSS call: the statistics, or (`list`) a page of the registry listing.
    async fn hss(
        &self,
        parts: &http::request::Parts,
        body: &[u8],
        project: &str,
        list: bool,
    ) -> Response<SimBody> {
        let request_id = self.request_id();
        let raw_query = parts.uri.query().unwrap_or("").to_string();
        let query: Vec<(String, String)> = raw_query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (signer::decode(k), signer::decode(v))
            })
            .collect();
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let registry_type = param("registry_type");
        let eps = param("enterprise_project_id");

        let mut fault = None;
        let outcome = {
            let mut s = self.state();
            let caller = authenticate(&s, parts, body, project, &query);
            let result = match caller {
                Err((caller, why)) => Err((
                    caller,
                    error(
                        401,
                        "APIGW.0301",
                        &format!("Incorrect IAM authentication information: {why}"),
                        &request_id,
                    ),
                )),
                Ok(caller) => {
                    if let Err(limit) = s.admit(&caller) {
                        Err((caller, error(429, "APIGW.0308", &format!("The throttling threshold has been reached: policy user over ratelimit,limit:{limit},time:1 minute"), &request_id)))
                    } else {
                        fault = s.faults.iter_mut().find_map(|r| {
                            r.applies(project, registry_type.as_deref(), list, &raw_query, false)
                                .then(|| r.fault.clone())
                        });
                        let answer = if list {
                            s.list(project, &query, &request_id)
                        } else {
                            s.answer(
                                project,
                                eps.as_deref(),
                                registry_type.as_deref(),
                                &request_id,
                            )
                        };
                        Ok((caller, answer))
                    }
                }
            };
            let (caller, response) = match result {
                Ok(x) | Err(x) => x,
            };
            (caller, response)
        };
        let (caller, mut response) = outcome;
        match fault {
            None => {}
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Status(code)) => {
                response = error(code, "HSS.0004", "simulated server error", &request_id);
            }
            Some(Fault::Throttle { retry_after }) => {
                response = error(429, "APIGW.0308", "The throttling threshold has been reached: policy user over ratelimit,limit:5,time:1 minute", &request_id);
                if let Some(secs) = retry_after {
                    response
                        .headers_mut()
                        .insert(http::header::RETRY_AFTER, secs.into());
                }
            }
            Some(Fault::Reset) => {
                response =
                    Response::new(SimBody::broken(Bytes::from_static(b"{\"fail_num\": 1, ")));
            }
            Some(Fault::Body(text)) => {
                response = Response::new(SimBody::full(Bytes::from(text)));
            }
        }
        self.state().record(LogEntry {
            at: Instant::now(),
            service: Service::Hss,
            caller,
            project_id: project.to_string(),
            path: parts.uri.path().to_string(),
            query: raw_query,
            status: response.status().as_u16(),
        });
        response
    }

    /// IAM's `GET /v3/auth/projects`: any valid token (static, or issued for any scope) or an
    /// AK/SK signature; every caller sees every project.
    async fn list_projects(&self, parts: &http::request::Parts, body: &[u8]) -> Response<SimBody> {
        let request_id = self.request_id();
        let raw_query = parts.uri.query().unwrap_or("").to_string();
        let mut fault = None;
        let (caller, mut response) = {
            let mut s = self.state();
            let token = parts
                .headers
                .get("X-Auth-Token")
                .and_then(|v| v.to_str().ok());
            let caller = match token {
                Some(t) => match (s.static_tokens.get(t), s.issued.get(t)) {
                    (Some(owner), _) => Ok(owner.clone()),
                    (None, Some(i)) if Instant::now() < i.expires => Ok(i.caller.clone()),
                    _ => Err((String::new(), "token is not valid".to_string())),
                },
                None => authenticate(&s, parts, body, "", &[]),
            };
            match caller {
                Err((caller, why)) => (
                    caller,
                    error(
                        401,
                        "IAM.0001",
                        &format!("Incorrect IAM authentication information: {why}"),
                        &request_id,
                    ),
                ),
                Ok(caller) => {
                    fault = s.faults.iter_mut().find_map(|r| {
                        r.applies("", None, false, &raw_query, true)
                            .then(|| r.fault.clone())
                    });
                    let projects: Vec<serde_json::Value> = s
                        .iam_projects
                        .iter()
                        .map(|(id, name, enabled)| {
                            let parent = name.split_once('_').map_or("domain-id", |(r, _)| r);
                            serde_json::json!({
                                "id": id, "name": name, "enabled": enabled, "is_domain": false,
                                "description": "", "parent_id": parent, "domain_id": "domain-id",
                                "links": {"self": format!("https://iam.myhuaweicloud.com/v3/projects/{id}")}
                            })
                        })
                        .collect();
                    (
                        caller,
                        json(
                            200,
                            &serde_json::json!({"projects": projects, "links": {"self": "https://iam.myhuaweicloud.com/v3/auth/projects"}}),
                        ),
                    )
                }
            }
        };
        match fault {
            None => {}
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Status(code)) => {
                response = error(code, "IAM.0003", "simulated server error", &request_id);
            }
            Some(Fault::Throttle { .. }) => {
                response = error(
                    429,
                    "APIGW.0308",
                    "The throttling threshold has been reached",
                    &request_id,
                );
            }
            Some(Fault::Reset) => {
                response = Response::new(SimBody::broken(Bytes::from_static(b"{\"projects\": [")));
            }
            Some(Fault::Body(text)) => response = Response::new(SimBody::full(Bytes::from(text))),
        }
        self.state().record(LogEntry {
            at: Instant::now(),
            service: Service::Iam,
            caller,
            project_id: String::new(),
            path: parts.uri.path().to_string(),
            query: raw_query,
            status: response.status().as_u16(),
        });
        response
    }

    fn issue_token(&self, body: &[u8]) -> Response<SimBody> {
        let request_id = self.request_id();
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let user = &v["auth"]["identity"]["password"]["user"];
        let (domain, name, password) = (
            user["domain"]["name"].as_str().unwrap_or(""),
            user["name"].as_str().unwrap_or(""),
            user["password"].as_str().unwrap_or(""),
        );
        let project_id = v["auth"]["scope"]["project"]["id"]
            .as_str()
            .unwrap_or("")
            .to_string();
        // A domain-scoped token: for IAM calls outside any project.
        let domain_scope = v["auth"]["scope"]["domain"]["name"].as_str() == Some(domain);
        let mut s = self.state();
        let caller = format!("{domain}/{name}");
        let known = s.users.iter().any(|u| {
            u.domain == domain
                && u.name == name
                && bool::from(u.password.as_bytes().ct_eq(password.as_bytes()))
        });
        let response = if !known || (project_id.is_empty() && !domain_scope) {
            let mut r = json(
                401,
                &serde_json::json!({"error": {"code": 401, "message": "The username or password is wrong.", "title": "Unauthorized"}}),
            );
            r.headers_mut()
                .insert("X-Request-Id", request_id.parse().expect("ascii"));
            r
        } else {
            let lifetime = s.token_lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
            s.counter += 1;
            let token = format!("MIIsim{:016x}{}", s.counter, rand::random::<u64>());
            s.issued.insert(
                token.clone(),
                Issued {
                    caller: caller.clone(),
                    project_id: project_id.clone(),
                    expires: Instant::now() + lifetime,
                },
            );
            let expires_at =
                humantime::format_rfc3339_micros(SystemTime::now() + lifetime).to_string();
            let mut r = json(
                201,
                &serde_json::json!({"token": {"expires_at": expires_at, "methods": ["password"], "project": {"id": project_id}}}),
            );
            r.headers_mut()
                .insert("X-Subject-Token", token.parse().expect("ascii token"));
            r
        };
        s.record(LogEntry {
            at: Instant::now(),
            service: Service::Iam,
            caller,
            project_id,
            path: "/v3/auth/tokens".into(),
            query: String::new(),
            status: response.status().as_u16(),
        });
        response
    }
}

impl State {
    fn record(&mut self, entry: LogEntry) {
        if !self.no_log {
            self.log.push(entry);
        }
    }

    /// Counts the call against the caller's window, or refuses it with the limit.
    fn admit(&mut self, caller: &str) -> Result<(), u32> {
        let Some(limit) = self.rate_limit_per_minute else {
            return Ok(());
        };
        let now = Instant::now();
        let window = self.windows.entry(caller.to_string()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            window.pop_front();
        }
        if window.len() >= limit as usize {
            return Err(limit);
        }
        window.push_back(now);
        Ok(())
    }

    fn answer(
        &self,
        project: &str,
        eps: Option<&str>,
        registry_type: Option<&str>,
        request_id: &str,
    ) -> Response<SimBody> {
        let types: Vec<RegistryType> = match registry_type {
            None => RegistryType::ALL.to_vec(),
            Some(list) => match list
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<_>, ()>>()
            {
                Ok(types) => types,
                Err(()) => {
                    return error(
                        400,
                        "HSS.1002",
                        &format!("invalid registry_type {list:?}"),
                        request_id,
                    )
                }
            },
        };
        let eps = eps.unwrap_or("0");
        let (mut fail_num, mut success_num) = (0, 0);
        for ((p, e, t), v) in &self.stats {
            if p == project && (eps == "all_granted_eps" || e == eps) && types.contains(t) {
                fail_num += v.fail_num;
                success_num += v.success_num;
            }
        }
        json(
            200,
            &serde_json::json!({"fail_num": fail_num, "success_num": success_num}),
        )
    }
}

impl State {
    /// A page of `GET /v5/{project}/image/registries`, with the API's filters and paging.
    fn list(
        &self,
        project: &str,
        query: &[(String, String)],
        request_id: &str,
    ) -> Response<SimBody> {
        let param = |name: &str| {
            query
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let number =
            |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| match param(name) {
                None => Ok(default),
                Some(v) => v
                    .parse::<u64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        Box::new(error(
                            400,
                            "HSS.1002",
                            &format!(
                                "invalid {name} {v:?} (expected {}-{})",
                                range.start(),
                                range.end()
                            ),
                            request_id,
                        ))
                    }),
            };
        // The API documents limit 10-200; whether it refuses or clamps other values is not
        // documented: the simulator refuses them.
        let limit = match number("limit", 10, 10..=200) {
            Ok(n) => n as usize,
            Err(r) => return *r,
        };
        let offset = match number("offset", 0, 0..=2_000_000) {
            Ok(n) => n as usize,
            Err(r) => return *r,
        };
        let eps = param("enterprise_project_id").unwrap_or("0");
        let types: Option<Vec<&str>> = param("registry_type").map(|t| t.split(',').collect());
        let matches = |r: &Registry| {
            param("registry_name").is_none_or(|n| r.name.contains(n))
                && param("registry_id").is_none_or(|id| r.id == id)
                && param("registry_addr").is_none_or(|a| r.addr.contains(a))
                && param("status").is_none_or(|st| r.status.map(RegistryStatus::as_str) == Some(st))
                && types
                    .as_ref()
                    .is_none_or(|t| t.contains(&r.registry_type.as_str()))
        };
        let all: Vec<&Registry> = self
            .registries
            .iter()
            .filter(|((p, e), _)| p == project && (eps == "all_granted_eps" || e == eps))
            .flat_map(|(_, list)| list.iter())
            .filter(|r| matches(r))
            .collect();
        let page: Vec<serde_json::Value> = all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|r| registry_json(r))
            .collect();
        json(
            200,
            &serde_json::json!({"total_num": all.len(), "data_list": page}),
        )
    }
}

/// A registry as the API writes it; fields the simulator does not know are left out.
fn registry_json(r: &Registry) -> serde_json::Value {
    let mut o = serde_json::Map::new();
    for (k, v) in [
        ("id", &r.id),
        ("registry_name", &r.name),
        ("registry_type", &r.registry_type),
        ("registry_addr", &r.addr),
        ("connect_cluster_id", &r.connect_cluster_id),
        ("fail_reason", &r.fail_reason),
    ] {
        if !v.is_empty() {
            o.insert(k.into(), v.clone().into());
        }
    }
    if let Some(s) = r.status {
        o.insert("status".into(), s.as_str().into());
    }
    if let Some(n) = r.images_num {
        o.insert("images_num".into(), n.into());
    }
    if let Some(t) = r.latest_sync_time_ms {
        o.insert("latest_sync_time".into(), t.into());
    }
    o.insert("api_version".into(), "V2".into());
    o.insert("protocol".into(), "https".into());
    o.insert("get_scan_image_channel".into(), "Other".into());
    serde_json::Value::Object(o)
}

/// A running simulator; dropping it stops it.
pub struct SimServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http`, or `https` when started with [`Sim::start_tls`].
    scheme: &'static str,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SimServer {
    /// `http://addr` (`https://` when serving TLS), for an account's `endpoint`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
