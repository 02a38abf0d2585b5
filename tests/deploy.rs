//! Checks of the deployment files under `deploy/`:
//!
//! * the Kubernetes manifests parse and agree with the exporter (port, probe paths, flags,
//!   `ServiceMonitor`), the systemd unit and the Dockerfile only use real flags, and the
//!   example configurations pass `hss-exporter check-config`;
//! * the files rendered from the monitoring mixin (`deploy/mixin`): the `PrometheusRule` carries
//!   the groups of `deploy/prometheus/rules.yml`, every alert has its section in
//!   `deploy/runbooks.md`, and (with `jsonnet` on PATH; required when
//!   `HSS_EXPORTER_REQUIRE_JSONNET=1`) both rule files and the dashboard read back as exactly
//!   what the mixin evaluates to;
//! * the Grafana dashboard is well formed: variables, instant queries in stat panels, links;
//! * the dashboard's stat queries, run by `promtool test rules`: "unknown" (no data) while a
//!   target has no values or an exporter is down, a fail ratio of 0 without registries;
//! * end to end: the exporter in demo mode, scraped by a real Prometheus server loaded with the
//!   repository's rules; the series, the recording rules, every alert expression, the headline
//!   alert, the dashboard variables and every dashboard expression are checked through
//!   Prometheus' HTTP API, and, with the demo stopped, that the stat panels turn unknown.
//!   These need `promtool` and `prometheus` on PATH (Debian package `prometheus`); they are
//!   skipped without them unless `HSS_EXPORTER_REQUIRE_PROMETHEUS=1`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use common::{free_port, metrics_url, ConfigFile, NO_API};

const EXPORTER_PORT: u64 = 9943;
/// Flags of `hss-exporter` (serve mode) that take a value.
const EXPORTER_FLAGS: [&str; 5] = [
    "--config.file",
    "--web.listen-address",
    "--web.telemetry-path",
    "--log.level",
    "--log.format",
];
const LOG_LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];
const LOG_FORMATS: [&str; 3] = ["logfmt", "json", "text"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every non-empty YAML document of a file.
fn yaml_documents(path: &Path) -> Vec<Yaml> {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(&text).enumerate() {
        let doc = Yaml::deserialize(de)
            .unwrap_or_else(|e| panic!("{} document {i} is not valid YAML: {e}", path.display()));
        if !doc.is_null() {
            docs.push(doc);
        }
    }
    docs
}

fn yaml_file(rel: &str) -> Yaml {
    let mut docs = yaml_documents(&repo().join(rel));
    assert_eq!(docs.len(), 1, "{rel}: expected exactly one YAML document");
    docs.remove(0)
}

fn kubernetes_files() -> Vec<PathBuf> {
    let dir = repo().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    files
}

/// Every Kubernetes object under deploy/kubernetes, with the file it came from.
fn kubernetes_objects() -> Vec<(String, Yaml)> {
    let mut objects = Vec::new();
    for path in kubernetes_files() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for doc in yaml_documents(&path) {
            objects.push((name.clone(), doc));
        }
    }
    objects
}

fn object<'a>(objects: &'a [(String, Yaml)], kind: &str) -> &'a Yaml {
    let found: Vec<&Yaml> = objects
        .iter()
        .filter(|(_, o)| o["kind"].as_str() == Some(kind))
        .map(|(_, o)| o)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind} under deploy/kubernetes"
    );
    found[0]
}

fn str_of<'a>(v: &'a Yaml, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {v:?}"))
}

fn seq_of<'a>(v: &'a Yaml, what: &str) -> &'a Vec<Yaml> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what}: expected a list, found {v:?}"))
}

fn port_of(address: &str) -> u64 {
    address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("{address:?} has no port"))
}

/// Checks that `args` (without the program) are serve-mode flags of the exporter only, and
/// returns them as flag -> value.
fn exporter_args(args: &[String], what: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        assert!(
            arg.starts_with("--"),
            "{what}: unexpected argument {arg:?} (subcommand or stray value)"
        );
        let (flag, value) = if let Some((f, v)) = arg.split_once('=') {
            (f.to_string(), v.to_string())
        } else {
            let v = it
                .next()
                .unwrap_or_else(|| panic!("{what}: {arg} lacks its value"));
            (arg.clone(), v.clone())
        };
        assert!(
            EXPORTER_FLAGS.contains(&flag.as_str()),
            "{what}: {flag} is not a flag of hss-exporter"
        );
        assert!(
            !value.is_empty() && !value.starts_with("--"),
            "{what}: {flag} lacks its value"
        );
        match flag.as_str() {
            "--log.level" => assert!(
                LOG_LEVELS.contains(&value.as_str()),
                "{what}: bad --log.level {value}"
            ),
            "--log.format" => assert!(
                LOG_FORMATS.contains(&value.as_str()),
                "{what}: bad --log.format {value}"
            ),
            "--web.listen-address" => {
                assert_eq!(port_of(&value), EXPORTER_PORT, "{what}: listen port");
            }
            _ => {}
        }
        assert!(
            out.insert(flag.clone(), value).is_none(),
            "{what}: {flag} given twice"
        );
    }
    out
}

// ------------------------------------------------------------------------------ Kubernetes

#[test]
fn kubernetes_yaml_parses() {
    let files = kubernetes_files();
    assert!(!files.is_empty(), "no YAML under deploy/kubernetes");
    for path in &files {
        let docs = yaml_documents(path);
        assert!(!docs.is_empty(), "{}: no YAML document", path.display());
        for doc in docs {
            assert!(
                doc["apiVersion"].is_string(),
                "{}: document without apiVersion",
                path.display()
            );
            assert!(
                doc["kind"].is_string(),
                "{}: document without kind",
                path.display()
            );
        }
    }
    // Every resource the kustomization lists exists and is one of these files.
    let kustomization = yaml_file("deploy/kubernetes/kustomization.yaml");
    let names: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for r in seq_of(&kustomization["resources"], "kustomization resources") {
        let r = str_of(r, "kustomization resource");
        assert!(
            names.contains(r),
            "kustomization lists {r}, which is not in deploy/kubernetes"
        );
    }
}

#[test]
fn kubernetes_manifests_agree_with_the_exporter() {
    let objects = kubernetes_objects();
    let deployment = object(&objects, "Deployment");
    let service = object(&objects, "Service");
    let monitor = object(&objects, "ServiceMonitor");
    let configmap = object(&objects, "ConfigMap");
    let secret = object(&objects, "Secret");

    let pod = &deployment["spec"]["template"];
    let pod_labels = pod["metadata"]["labels"].as_mapping().expect("pod labels");
    assert_eq!(
        deployment["spec"]["replicas"].as_u64(),
        Some(1),
        "one poller per set of credentials"
    );
    for (k, v) in deployment["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "Deployment selector {k:?} does not match the pod"
        );
    }
    assert_eq!(
        pod["spec"]["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );

    let containers = seq_of(&pod["spec"]["containers"], "containers");
    assert_eq!(containers.len(), 1, "one container");
    let c = &containers[0];

    // Port 9943, named so that probes, Service and ServiceMonitor can refer to it.
    let ports = seq_of(&c["ports"], "container ports");
    let port = ports
        .iter()
        .find(|p| p["containerPort"].as_u64() == Some(EXPORTER_PORT))
        .expect("container port 9943");
    let port_name = str_of(&port["name"], "container port name");
    let port_ok = |p: &Yaml| p.as_str() == Some(port_name) || p.as_u64() == Some(EXPORTER_PORT);

    for (probe, path) in [
        ("livenessProbe", "/-/healthy"),
        ("readinessProbe", "/-/ready"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe} path");
        assert!(port_ok(&get["port"]), "{probe} port {:?}", get["port"]);
    }

    let sc = &c["securityContext"];
    assert_eq!(
        sc["readOnlyRootFilesystem"].as_bool(),
        Some(true),
        "read-only root filesystem"
    );
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][res].is_string(),
                "resources.{kind}.{res} missing"
            );
        }
    }

    // Arguments: serve-mode flags only; the config file comes from the ConfigMap.
    let args: Vec<String> = seq_of(&c["args"], "container args")
        .iter()
        .map(|a| str_of(a, "arg").to_string())
        .collect();
    if let Some(cmd) = c.get("command") {
        let cmd = seq_of(cmd, "command");
        assert!(
            cmd.len() == 1 && str_of(&cmd[0], "command").ends_with("hss-exporter"),
            "command {cmd:?}"
        );
    }
    let flags = exporter_args(&args, "Deployment args");
    let config_path = Path::new(
        flags
            .get("--config.file")
            .expect("Deployment passes --config.file"),
    );
    let mounts = seq_of(&c["volumeMounts"], "volumeMounts");
    let volumes = seq_of(&pod["spec"]["volumes"], "volumes");
    let mount_of = |dir: &Path| mounted_volume(mounts, volumes, dir);
    let config_volume = mount_of(config_path.parent().unwrap());
    assert_eq!(
        config_volume["configMap"]["name"].as_str(),
        configmap["metadata"]["name"].as_str(),
        "the config volume is the ConfigMap"
    );
    let file = config_path.file_name().unwrap().to_str().unwrap();
    let config: Yaml = serde_yaml::from_str(str_of(&configmap["data"][file], "ConfigMap config"))
        .expect("ConfigMap config is YAML");
    let listen = config["web"]["listen_address"]
        .as_str()
        .unwrap_or("0.0.0.0:9943");
    assert_eq!(port_of(listen), EXPORTER_PORT, "ConfigMap listen address");

    // Credential files named in the config live in the Secret's volume, under its keys.
    let secret_keys: BTreeSet<&str> = secret["stringData"]
        .as_mapping()
        .or_else(|| secret["data"].as_mapping())
        .expect("Secret data")
        .keys()
        .map(|k| str_of(k, "Secret key"))
        .collect();
    let mut files = Vec::new();
    collect_file_keys(&config, &mut files);
    assert!(
        !files.is_empty(),
        "the ConfigMap config should read its secrets from files"
    );
    for f in files {
        let f = Path::new(&f);
        let volume = mount_of(f.parent().unwrap());
        assert_eq!(
            volume["secret"]["secretName"].as_str(),
            secret["metadata"]["name"].as_str(),
            "{} is not in the Secret's volume",
            f.display()
        );
        let key = f.file_name().unwrap().to_str().unwrap();
        assert!(secret_keys.contains(key), "Secret example lacks key {key}");
    }

    // Service: selects the pod, exposes the named port.
    for (k, v) in service["spec"]["selector"]
        .as_mapping()
        .expect("Service selector")
    {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "Service selector {k:?} does not match the pod"
        );
    }
    let service_ports = seq_of(&service["spec"]["ports"], "Service ports");
    let service_port = service_ports
        .iter()
        .find(|p| port_ok(&p["targetPort"]))
        .expect("a Service port targeting the exporter");
    let service_port_name = str_of(&service_port["name"], "Service port name");

    // ServiceMonitor: selects the Service, scrapes /metrics on its port.
    let service_labels = service["metadata"]["labels"]
        .as_mapping()
        .expect("Service labels");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("ServiceMonitor selector")
    {
        assert_eq!(
            service_labels.get(k),
            Some(v),
            "ServiceMonitor selector {k:?} does not match the Service"
        );
    }
    if let Some(job_label) = monitor["spec"]["jobLabel"].as_str() {
        assert_eq!(
            service_labels.get(job_label).and_then(|v| v.as_str()),
            Some("hss-exporter"),
            "jobLabel must yield job=\"hss-exporter\", which the alert rules use"
        );
    } else {
        assert_eq!(
            service["metadata"]["name"].as_str(),
            Some("hss-exporter"),
            "job label = Service name"
        );
    }
    let endpoints = seq_of(&monitor["spec"]["endpoints"], "ServiceMonitor endpoints");
    assert!(!endpoints.is_empty());
    for e in endpoints {
        assert_eq!(
            e["port"].as_str(),
            Some(service_port_name),
            "ServiceMonitor port name"
        );
        assert_eq!(
            e.get("path").and_then(|p| p.as_str()).unwrap_or("/metrics"),
            "/metrics"
        );
    }
}

/// The volume mounted (read-only) at `dir`.
fn mounted_volume<'a>(mounts: &[Yaml], volumes: &'a [Yaml], dir: &Path) -> &'a Yaml {
    let m = mounts
        .iter()
        .find(|m| Path::new(str_of(&m["mountPath"], "mountPath")) == dir)
        .unwrap_or_else(|| panic!("nothing mounted at {}", dir.display()));
    assert_eq!(
        m["readOnly"].as_bool(),
        Some(true),
        "{} should be mounted read-only",
        dir.display()
    );
    let name = str_of(&m["name"], "volumeMount name");
    volumes
        .iter()
        .find(|v| v["name"].as_str() == Some(name))
        .expect("volume of a mount")
}

/// Values of every `*_file` key in a config.
fn collect_file_keys(v: &Yaml, out: &mut Vec<String>) {
    match v {
        Yaml::Mapping(m) => {
            for (k, v) in m {
                if k.as_str().is_some_and(|k| k.ends_with("_file")) {
                    out.push(str_of(v, "file key").to_string());
                } else {
                    collect_file_keys(v, out);
                }
            }
        }
        Yaml::Sequence(s) => s.iter().for_each(|v| collect_file_keys(v, out)),
        _ => {}
    }
}

// ------------------------------------------------------------------------------ the mixin's files

const PROMETHEUSRULE: &str = "deploy/kubernetes/prometheusrule.yaml";
const RULES: &str = "deploy/prometheus/rules.yml";
const MIXIN: &str = "deploy/mixin";

#[test]
fn prometheusrule_carries_the_groups_of_rules_yml() {
    let rules = yaml_file(RULES);
    let rule = yaml_file(PROMETHEUSRULE);
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(rule["kind"].as_str(), Some("PrometheusRule"));
    assert_eq!(
        rule["metadata"]["labels"]["app.kubernetes.io/name"].as_str(),
        Some("hss-exporter")
    );
    assert!(
        !seq_of(&rules["groups"], "groups").is_empty(),
        "{RULES} has no groups"
    );
    assert!(
        rule["spec"]["groups"] == rules["groups"],
        "{PROMETHEUSRULE} and {RULES} carry different groups; both are rendered from {MIXIN}: \
         run deploy/mixin/render.sh"
    );
}

/// Every alert links its own section of deploy/runbooks.md, and every section there is an
/// alert's.
#[test]
fn every_alert_has_a_runbook_section() {
    let rules = yaml_file(RULES);
    let runbooks = read("deploy/runbooks.md");
    let sections: BTreeSet<String> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .filter(|h| h.starts_with("HSS"))
        .map(str::to_string)
        .collect();
    let mut alerts = BTreeSet::new();
    for group in seq_of(&rules["groups"], "groups") {
        for rule in seq_of(&group["rules"], "rules") {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            alerts.insert(name.to_string());
            let url = str_of(&rule["annotations"]["runbook_url"], "runbook_url");
            let (base, anchor) = url
                .split_once('#')
                .unwrap_or_else(|| panic!("{name}: runbook_url {url} has no anchor"));
            assert!(
                base.ends_with("/deploy/runbooks.md"),
                "{name}: runbook_url {url} does not point at deploy/runbooks.md"
            );
            assert_eq!(anchor, name.to_lowercase(), "{name}: runbook anchor");
            for key in ["summary", "description"] {
                assert!(
                    rule["annotations"][key]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{name}: no {key}"
                );
            }
            assert!(
                rule["annotations"].get("runbook").is_none(),
                "{name}: runbook text belongs in deploy/runbooks.md"
            );
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("warning" | "critical")
                ),
                "{name}: severity"
            );
        }
    }
    assert_eq!(
        sections, alerts,
        "deploy/runbooks.md sections vs. the alerts of {RULES}"
    );
}

/// `jsonnet` for the tests that evaluate the mixin: None (the test is skipped) when it is
/// not installed, unless `HSS_EXPORTER_REQUIRE_JSONNET=1`.
fn jsonnet() -> Option<PathBuf> {
    let found = find_on_path("jsonnet");
    if found.is_none() {
        assert!(
            std::env::var("HSS_EXPORTER_REQUIRE_JSONNET").as_deref() != Ok("1"),
            "jsonnet not installed, and HSS_EXPORTER_REQUIRE_JSONNET=1"
        );
        eprintln!("skipped: jsonnet not installed (apt-get install jsonnet)");
    }
    found
}

/// Evaluates a jsonnet expression with deploy/mixin on the import path.
fn eval_jsonnet(jsonnet: &Path, expr: &str) -> Json {
    let out = Command::new(jsonnet)
        .arg("-J")
        .arg(repo().join(MIXIN))
        .args(["-e", expr])
        .output()
        .expect("run jsonnet");
    assert!(
        out.status.success(),
        "jsonnet -e {expr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("jsonnet prints JSON")
}

/// The rendered files read back as exactly the mixin's data: the YAML emitter of
/// deploy/mixin/lib/manifest.libsonnet quotes, folds and indents without changing a value.
/// (`deploy/mixin/render.sh --check`, run by scripts/check-deploy.sh, compares the text.)
#[test]
fn rendered_files_read_back_as_the_mixin() {
    let Some(jsonnet) = jsonnet() else {
        return;
    };
    let groups = eval_jsonnet(
        &jsonnet,
        "local m = import 'mixin.libsonnet'; m.prometheusRules.groups + m.prometheusAlerts.groups",
    );
    let as_json = |y: &Yaml| serde_json::to_value(y).expect("YAML as JSON");
    assert_eq!(
        as_json(&yaml_file(RULES)["groups"]),
        groups,
        "{RULES} does not read back as the mixin's groups"
    );
    assert_eq!(
        as_json(&yaml_file(PROMETHEUSRULE)["spec"]["groups"]),
        groups,
        "{PROMETHEUSRULE} does not read back as the mixin's groups"
    );
    let dashboard_json = eval_jsonnet(
        &jsonnet,
        "(import 'mixin.libsonnet').grafanaDashboards['hss-exporter.json']",
    );
    assert_eq!(
        dashboard(),
        dashboard_json,
        "{DASHBOARD} is not the mixin's dashboard: run deploy/mixin/render.sh"
    );
}

// ------------------------------------------------------------------------------ systemd, Docker, examples

#[test]
fn systemd_unit_and_dockerfile_use_real_flags() {
    let unit = read("deploy/systemd/hss-exporter.service");
    let mut starts = 0;
    for line in unit.lines().map(str::trim) {
        let Some(cmd) = line
            .strip_prefix("ExecStart=")
            .or_else(|| line.strip_prefix("ExecStartPre="))
        else {
            continue;
        };
        let mut words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
        assert_eq!(
            words.pop().as_deref(),
            Some("$ARGS"),
            "{line}: ends in $ARGS, the flags of the environment file"
        );
        assert!(
            words[0].ends_with("/hss-exporter"),
            "unit runs {}",
            words[0]
        );
        if let Some("check-config") = words.get(1).map(String::as_str) {
            exporter_args(&words[2..], "ExecStartPre check-config");
        } else {
            starts += 1;
            exporter_args(&words[1..], "ExecStart");
        }
    }
    assert_eq!(starts, 1, "one ExecStart");
    for needed in [
        "DynamicUser=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "Restart=on-failure",
        "EnvironmentFile=",
    ] {
        assert!(
            unit.lines().any(|l| l.starts_with(needed)),
            "unit lacks {needed}"
        );
    }

    let dockerfile = read("deploy/docker/Dockerfile");
    let json_array = |prefix: &str| -> Vec<String> {
        let line = dockerfile
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("Dockerfile has no {prefix}"));
        serde_json::from_str(line[prefix.len()..].trim()).expect("exec-form JSON array")
    };
    let entrypoint = json_array("ENTRYPOINT ");
    assert!(
        entrypoint.len() == 1 && entrypoint[0].ends_with("/hss-exporter"),
        "{entrypoint:?}"
    );
    exporter_args(&json_array("CMD "), "Dockerfile CMD");
    assert!(dockerfile.contains(&format!("EXPOSE {EXPORTER_PORT}")));
    assert!(
        !dockerfile.lines().any(|l| l.starts_with("HEALTHCHECK")),
        "no HEALTHCHECK (no tool to run it)"
    );
    // Base images pinned by version, and the OCI labels of the build.
    let arg = |name: &str| -> String {
        dockerfile
            .lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("Dockerfile has no default for ARG {name}"))
            .to_string()
    };
    let rust = arg("RUST_IMAGE");
    let version = rust
        .strip_prefix("rust:")
        .and_then(|t| t.split('-').next())
        .unwrap_or_default();
    assert_eq!(
        version.split('.').count(),
        3,
        "the Rust image is pinned to a release: {rust}"
    );
    assert!(
        arg("RUNTIME_IMAGE").contains("-debian12"),
        "the runtime's Debian release is pinned"
    );
    let cargo_version = read("Cargo.toml")
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("Cargo.toml version");
    assert_eq!(
        arg("HSS_EXPORTER_VERSION"),
        cargo_version,
        "the image's version label follows Cargo.toml"
    );
    for label in ["source", "version", "revision", "licenses"] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label}"
        );
    }
    let user = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("USER in the runtime stage");
    assert!(
        !user.contains("root") && !user.trim_end().ends_with(" 0"),
        "{user}"
    );
}

fn check_config(path: &Path, envs: &[(&str, &str)]) {
    let out = Command::new(env!("CARGO_BIN_EXE_hss-exporter"))
        .args(["check-config", "--config.file"])
        .arg(path)
        .envs(envs.iter().copied())
        .output()
        .expect("run hss-exporter check-config");
    assert!(
        out.status.success(),
        "check-config {} failed:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_configmap_config_passes_check_config() {
    // (config.example.yaml at the top is checked in tests/cli.rs.)
    // The ConfigMap's config, with the Secret's mount point replaced by a temp dir.
    let objects = kubernetes_objects();
    let configmap = object(&objects, "ConfigMap");
    let text = str_of(&configmap["data"]["config.yaml"], "ConfigMap config.yaml");
    let mut files = Vec::new();
    collect_file_keys(&serde_yaml::from_str(text).unwrap(), &mut files);
    let config = ConfigFile::new(NO_API);
    let mut text = text.to_string();
    for f in files {
        let f = Path::new(&f);
        let name = f.file_name().unwrap().to_str().unwrap();
        let local = config.write_file(name, "exampleCredential0123456789");
        text = text.replace(f.to_str().unwrap(), local.to_str().unwrap());
    }
    config.write(&text);
    check_config(&config.path(), &[]);
}

// ------------------------------------------------------------------------------ Grafana

const DASHBOARD: &str = "deploy/grafana/dashboards/hss-exporter.json";
/// The dashboard's query variables, in the order each narrows the next.
const DASHBOARD_VARIABLES: [&str; 6] = [
    "job",
    "instance",
    "account",
    "region",
    "project_id",
    "registry_type",
];

fn dashboard() -> Json {
    serde_json::from_str(&read(DASHBOARD)).expect("dashboard is JSON")
}

/// Every panel, rows and the panels inside them included.
fn dashboard_panels(d: &Json) -> Vec<Json> {
    fn walk(panels: &Json, out: &mut Vec<Json>) {
        for p in panels.as_array().into_iter().flatten() {
            out.push(p.clone());
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&d["panels"], &mut out);
    out
}

/// (panel, target) of every query of every panel.
fn dashboard_targets(d: &Json) -> Vec<(Json, Json)> {
    dashboard_panels(d)
        .into_iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |t| (p.clone(), t))
        })
        .collect()
}

fn title(panel: &Json) -> &str {
    panel["title"].as_str().unwrap_or("?")
}

/// The `label_values(...)` query of a template variable.
fn variable_query(v: &Json) -> String {
    match &v["query"] {
        Json::String(s) => s.clone(),
        q => q["query"].as_str().expect("variable query").to_string(),
    }
}

/// The query variables of the dashboard, in order.
fn dashboard_variables(d: &Json) -> Vec<Json> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .cloned()
        .collect()
}

/// `label_values(selector, label)` as an instant query that lists the label's values:
/// (`count by (label) (selector)`, label).
fn label_values_query(query: &str) -> (String, String) {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(selector, label): {query}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .expect("label_values(selector, label)");
    let label = label.trim().to_string();
    (format!("count by ({label}) ({})", selector.trim()), label)
}

/// How Grafana's Prometheus data source writes a multi-value variable into a query: each value
/// with the regex special characters escaped (for a `PromQL` string, so with two backslashes),
/// one value as is, several as `(a|b)`.
fn grafana_regex(values: &[String]) -> String {
    let escaped: Vec<String> = values
        .iter()
        .map(|v| {
            let mut e = String::new();
            for c in v.chars() {
                if c == '\\' {
                    e.push_str("\\\\\\\\");
                } else {
                    if "$^*{}[]'+?.()|".contains(c) {
                        e.push_str("\\\\");
                    }
                    e.push(c);
                }
            }
            e
        })
        .collect();
    match escaped.as_slice() {
        [one] => one.clone(),
        _ => format!("({})", escaped.join("|")),
    }
}

/// The value of a variable with "All" selected: its allValue, or else every value found.
fn all_of(variable: &Json, values: &[String]) -> String {
    match variable["allValue"].as_str() {
        Some(all) => all.to_string(),
        None => grafana_regex(values),
    }
}

/// Replaces Grafana's variables: the query variables from `vars`, the interval ones with fixed
/// values.
fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut e = expr.to_string();
    let intervals = [
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__range", "5m"),
    ];
    for (var, value) in intervals
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        e = e
            .replace(&format!("${{{var}}}"), value)
            .replace(&format!("${var}"), value);
    }
    assert!(!e.contains('$'), "unsubstituted variable in {expr}");
    e
}

#[test]
fn grafana_dashboard_is_well_formed() {
    let d = dashboard();
    assert!(d["uid"].is_string() && d["title"].is_string());
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("datasource variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let names: Vec<String> = dashboard_variables(&d)
        .iter()
        .map(|v| v["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        names, DASHBOARD_VARIABLES,
        "query variables and their order"
    );
    // Placeholder values, as Grafana would write them with "All" selected.
    let mut placeholders = BTreeMap::new();
    for v in dashboard_variables(&d) {
        let name = v["name"].as_str().unwrap().to_string();
        assert_eq!(v["multi"], true, "{name} multi-select");
        assert_eq!(v["includeAll"], true, "{name} All");
        assert!(
            v["datasource"]["uid"]
                .as_str()
                .is_some_and(|u| u.contains("datasource")),
            "{name} datasource"
        );
        let q = variable_query(&v);
        assert!(
            q.starts_with("label_values(") && q.trim_end().ends_with(&format!(", {name})")),
            "{name}: {q}"
        );
        // A variable's query only refers to the variables before it.
        substitute(&q, &placeholders);
        if matches!(name.as_str(), "job" | "instance") {
            // "All" must not become `.*`, or `up{job=~"$job"}` would match every job.
            assert!(v.get("allValue").is_none(), "{name}: allValue");
        }
        let value = all_of(
            &v,
            &["hss-exporter".to_string(), "127.0.0.1:9943".to_string()],
        );
        placeholders.insert(name, value);
    }

    // Links: the runbooks and the exporter's status page.
    let links = d["links"].as_array().expect("dashboard links");
    assert!(
        links.iter().any(|l| l["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/deploy/runbooks.md"))),
        "no link to the runbooks: {links:?}"
    );
    assert!(
        links
            .iter()
            .any(|l| l["url"].as_str().is_some_and(|u| u.contains("${instance}"))),
        "no link to the status page: {links:?}"
    );

    let targets = dashboard_targets(&d);
    assert!(targets.len() >= 10, "only {} queries", targets.len());
    let mut ids = BTreeSet::new();
    for p in dashboard_panels(&d) {
        let id = p["id"].as_u64().expect("panel id");
        assert!(ids.insert(id), "duplicate panel id {id}");
        if p["type"] != "row" {
            assert_eq!(
                p["datasource"]["uid"],
                "${datasource}",
                "panel {} datasource",
                title(&p)
            );
        }
        if p["type"] == "stat" {
            // A current value: an instant query, and "unknown" rather than a number when
            // there is none.
            let defaults = &p["fieldConfig"]["defaults"];
            assert_eq!(defaults["noValue"], "unknown", "{}: noValue", title(&p));
            assert!(
                defaults["mappings"].as_array().is_some_and(|m| {
                    m.iter().any(|m| {
                        m["type"] == "special" && m["options"]["result"]["text"] == "unknown"
                    })
                }),
                "{}: no null/NaN mapping to unknown",
                title(&p)
            );
            for t in p["targets"].as_array().expect("stat targets") {
                assert!(
                    t["instant"] == true && t["range"] == false,
                    "{}: stat panels query the current value (instant), not a range: {t}",
                    title(&p)
                );
            }
        }
    }
    assert!(
        dashboard_panels(&d)
            .iter()
            .any(|p| title(p).contains("down") && title(p).contains("stale")),
        "no panel of targets down or stale"
    );
    for (p, t) in &targets {
        let title = title(p);
        assert_eq!(
            t["datasource"]["uid"], "${datasource}",
            "{title}: target datasource"
        );
        let expr = t["expr"]
            .as_str()
            .unwrap_or_else(|| panic!("{title}: target without expr"));
        // Counters are rated over $__rate_interval, never a hard-coded window.
        for f in ["rate(", "increase(", "irate("] {
            let mut rest = expr;
            while let Some(i) = rest.find(f) {
                rest = &rest[i + f.len()..];
                let window = &rest[rest.find('[').expect("range selector")..];
                assert!(
                    window.starts_with("[$__rate_interval]"),
                    "{title}: {f} window in {expr}"
                );
            }
        }
        // Every query is limited to the selected exporters.
        assert!(
            expr.contains(r#"job=~"$job""#) && expr.contains(r#"instance=~"$instance""#),
            "{title}: not filtered by job and instance: {expr}"
        );
        substitute(expr, &placeholders);
    }
}

/// Runs `promtool test rules` on the stat panels' queries (variables as with "All" selected,
/// two exporters) over a few situations: the values when everything is known, "unknown" (no
/// data) while a target has no values or an exporter is down, and a fail ratio of 0, not NaN,
/// without registries. Needs promtool; skipped without it unless
/// `HSS_EXPORTER_REQUIRE_PROMETHEUS=1`.
#[test]
fn stat_panels_show_unknown_instead_of_a_number() {
    let Some(promtool) = find_on_path("promtool") else {
        assert!(
            std::env::var("HSS_EXPORTER_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "promtool not installed, and HSS_EXPORTER_REQUIRE_PROMETHEUS=1"
        );
        eprintln!("skipped: promtool not installed (apt-get install prometheus)");
        return;
    };
    let d = dashboard();
    let (a, b) = ("10.0.3.17:9943", "10.0.7.3:9943");
    let mut vars = BTreeMap::new();
    for v in dashboard_variables(&d) {
        let values = match v["name"].as_str().unwrap() {
            "job" => vec!["hss-exporter".to_string()],
            "instance" => vec![a.to_string(), b.to_string()],
            _ => vec!["unused".to_string()],
        };
        vars.insert(v["name"].as_str().unwrap().to_string(), all_of(&v, &values));
    }
    let stats: BTreeMap<String, String> = dashboard_targets(&d)
        .into_iter()
        .filter(|(p, _)| p["type"] == "stat")
        .map(|(_, t)| {
            (
                t["legendFormat"].as_str().unwrap().to_string(),
                substitute(t["expr"].as_str().unwrap(), &vars),
            )
        })
        .collect();

    // Series of one exporter (instance) and target (registry type), 11 samples a minute apart.
    let target = |metric: &str, instance: &str, registry_type: &str, values: &str| {
        serde_json::json!({
            "series": format!(
                r#"{metric}{{job="hss-exporter",instance="{instance}",account="prod",region="cn-north-4",project_id="0a1b2c3d4e5f60718293a4b5c6d7e8f9",registry_type="{registry_type}"}}"#
            ),
            "values": values,
        })
    };
    let exporter = |metric: &str, instance: &str, values: &str| {
        serde_json::json!({
            "series": format!(r#"{metric}{{job="hss-exporter",instance="{instance}"}}"#),
            "values": values,
        })
    };
    let suspended = |instance: &str, values: &str| {
        serde_json::json!({
            "series": format!(
                r#"hss_exporter_account_suspended{{job="hss-exporter",instance="{instance}",account="prod",region="cn-north-4"}}"#
            ),
            "values": values,
        })
    };
    // A healthy target: fail, success, up, last success (fresh).
    let healthy = |instance: &str, registry_type: &str, fail: u32, success: u32| {
        vec![
            target(
                "hss_registry_access_fail",
                instance,
                registry_type,
                &format!("{fail}x10"),
            ),
            target(
                "hss_registry_access_success",
                instance,
                registry_type,
                &format!("{success}x10"),
            ),
            target(
                "hss_registry_statistics_up",
                instance,
                registry_type,
                "1x10",
            ),
            target(
                "hss_registry_statistics_last_success_timestamp_seconds",
                instance,
                registry_type,
                "0+60x10",
            ),
        ]
    };
    let expect = |values: &[(&str, Option<f64>)]| -> Vec<Json> {
        assert_eq!(values.len(), stats.len(), "one expectation per stat query");
        values
            .iter()
            .map(|(legend, v)| {
                let expr = stats
                    .get(*legend)
                    .unwrap_or_else(|| panic!("no stat query {legend:?}"));
                let samples = match v {
                    Some(v) => serde_json::json!([{ "labels": "{}", "value": v }]),
                    None => serde_json::json!([]),
                };
                serde_json::json!({ "expr": expr, "eval_time": "5m", "exp_samples": samples })
            })
            .collect()
    };
    let mut tests = Vec::new();

    // Everything known: exporter a with Harbor (2 failing, 3 fine) and Jfrog (0, 5); b up.
    let mut series = healthy(a, "Harbor", 2, 3);
    series.extend(healthy(a, "Jfrog", 0, 5));
    series.extend([
        exporter("up", a, "1x10"),
        exporter("up", b, "1x10"),
        suspended(a, "0x10"),
    ]);
    tests.push((
        series,
        expect(&[
            ("Registries failing", Some(2.0)),
            ("Registries accessible", Some(8.0)),
            ("Fail ratio", Some(0.2)),
            ("Exporters down", Some(0.0)),
            ("Targets down", Some(0.0)),
            ("Targets stale", Some(0.0)),
            ("Accounts suspended", Some(0.0)),
            ("Oldest statistics", Some(0.0)),
        ]),
    ));

    // Jfrog's polls fail from 1m on and its values went stale at 4m: the sums are unknown.
    let mut series = healthy(a, "Harbor", 2, 3);
    series.extend([
        target("hss_registry_access_fail", a, "Jfrog", "0 0 0 0 stale"),
        target("hss_registry_access_success", a, "Jfrog", "5 5 5 5 stale"),
        target("hss_registry_statistics_up", a, "Jfrog", "1 0x9"),
        target(
            "hss_registry_statistics_last_success_timestamp_seconds",
            a,
            "Jfrog",
            "0x10",
        ),
        exporter("up", a, "1x10"),
        exporter("up", b, "1x10"),
        suspended(a, "0x10"),
    ]);
    tests.push((
        series,
        expect(&[
            ("Registries failing", None),
            ("Registries accessible", None),
            ("Fail ratio", None),
            ("Exporters down", Some(0.0)),
            ("Targets down", Some(1.0)),
            ("Targets stale", Some(1.0)),
            ("Accounts suspended", Some(0.0)),
            ("Oldest statistics", Some(300.0)),
        ]),
    ));

    // Exporter b (with Jfrog) is down from 4m on: Prometheus marked its series stale.
    let mut series = healthy(a, "Harbor", 2, 3);
    series.extend([
        target("hss_registry_access_fail", b, "Jfrog", "0 0 0 0 stale"),
        target("hss_registry_access_success", b, "Jfrog", "5 5 5 5 stale"),
        target("hss_registry_statistics_up", b, "Jfrog", "1 1 1 1 stale"),
        target(
            "hss_registry_statistics_last_success_timestamp_seconds",
            b,
            "Jfrog",
            "0+60x3 stale",
        ),
        exporter("up", a, "1x10"),
        exporter("up", b, "1 1 1 1 0x6"),
        suspended(a, "0x10"),
        suspended(b, "0 0 0 0 stale"),
    ]);
    tests.push((
        series,
        expect(&[
            ("Registries failing", None),
            ("Registries accessible", None),
            ("Fail ratio", None),
            ("Exporters down", Some(1.0)),
            ("Targets down", None),
            ("Targets stale", None),
            ("Accounts suspended", None),
            ("Oldest statistics", None),
        ]),
    ));

    // No registry connected at all: a fail ratio of 0, not NaN.
    let mut series = healthy(a, "Harbor", 0, 0);
    series.extend([
        exporter("up", a, "1x10"),
        exporter("up", b, "1x10"),
        suspended(a, "0x10"),
    ]);
    tests.push((
        series,
        expect(&[
            ("Registries failing", Some(0.0)),
            ("Registries accessible", Some(0.0)),
            ("Fail ratio", Some(0.0)),
            ("Exporters down", Some(0.0)),
            ("Targets down", Some(0.0)),
            ("Targets stale", Some(0.0)),
            ("Accounts suspended", Some(0.0)),
            ("Oldest statistics", Some(0.0)),
        ]),
    ));

    let file = serde_json::json!({
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": tests
            .into_iter()
            .map(|(series, promql)| serde_json::json!({
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": promql,
            }))
            .collect::<Vec<_>>(),
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stat-panels.test.yml");
    fs::write(&path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
    let out = Command::new(promtool)
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool test rules on the stat panels' queries failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------------------ end to end

/// A child process killed (and reaped) when dropped; its log is printed if a test fails.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- last lines of the {} log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
    }
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `rules.yml` with every `for:` set to 5s: the one change made for the end-to-end test,
/// so alerts fire within seconds instead of minutes.
fn rules_with_short_for() -> String {
    let mut rules = yaml_file(RULES);
    for group in rules["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            let rule = rule.as_mapping_mut().expect("rule");
            if rule.contains_key("for") {
                rule.insert("for".into(), "5s".into());
            }
        }
    }
    serde_yaml::to_string(&rules).unwrap()
}

struct Prom {
    http: reqwest::Client,
    base: String,
    deadline: Instant,
}

impl Prom {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    async fn get_json(&self, path: &str, form: &[(&str, &str)]) -> Result<Json, String> {
        let url = format!("{}{}", self.base, path);
        let req = if form.is_empty() {
            self.http.get(&url)
        } else {
            self.http.post(&url).form(form)
        };
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| format!("{url}: {e}"))?;
        let json: Json =
            serde_json::from_str(&body).map_err(|e| format!("{url}: {status} {e}: {body}"))?;
        if json["status"] != "success" {
            return Err(format!("{url} {form:?}: {status} {body}"));
        }
        Ok(json["data"].clone())
    }

    /// An instant query; an error status is an error.
    async fn query(&self, q: &str) -> Result<Vec<Json>, String> {
        let data = self.get_json("/api/v1/query", &[("query", q)]).await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// A range query over the last 30 seconds.
    async fn query_range(&self, q: &str) -> Result<Vec<Json>, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let (start, end) = ((now - 30).to_string(), now.to_string());
        let data = self
            .get_json(
                "/api/v1/query_range",
                &[
                    ("query", q),
                    ("start", &start),
                    ("end", &end),
                    ("step", "2"),
                ],
            )
            .await?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    async fn alerts(&self) -> Result<Vec<Json>, String> {
        let data = self.get_json("/api/v1/alerts", &[]).await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// Retries `check` every half second until it returns Ok or the deadline passes.
    async fn eventually<T, F, Fut>(&self, what: &str, procs: &mut [&mut Proc], mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        loop {
            for p in procs.iter_mut() {
                if let Some(status) = p.exited() {
                    panic!("{} exited ({status}) while waiting for {what}", p.name);
                }
            }
            match check().await {
                Ok(v) => return v,
                Err(e) if self.left().is_zero() => panic!("timed out waiting for {what}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

fn label<'a>(series: &'a Json, name: &str) -> &'a str {
    series["metric"][name].as_str().unwrap_or("")
}

fn value(series: &Json) -> f64 {
    series["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// (account, region, `project_id`, `registry_type`) of the demo's targets.
fn demo_targets() -> BTreeSet<(String, String, String, String)> {
    [
        (
            "prod",
            "cn-north-4",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "SwrPrivate",
        ),
        (
            "prod",
            "cn-north-4",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "Harbor",
        ),
        (
            "prod",
            "cn-north-4",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "Jfrog",
        ),
        (
            "staging",
            "ap-southeast-1",
            "f9e8d7c6b5a40312a1b2c3d4e5f60718",
            "all",
        ),
    ]
    .into_iter()
    .map(|(a, r, p, t)| (a.into(), r.into(), p.into(), t.into()))
    .collect()
}

fn target_of(series: &Json) -> (String, String, String, String) {
    (
        label(series, "account").into(),
        label(series, "region").into(),
        label(series, "project_id").into(),
        label(series, "registry_type").into(),
    )
}

/// Every series of `metric` carries the demo's target labels, job="hss-exporter", no
/// enterprise project, and all four targets are there.
fn check_target_series(metric: &str, result: &[Json]) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for s in result {
        if label(s, "job") != "hss-exporter" {
            return Err(format!("{metric}: job label {:?}", s["metric"]));
        }
        if !label(s, "enterprise_project_id").is_empty() {
            return Err(format!(
                "{metric}: unexpected enterprise_project_id {:?}",
                s["metric"]
            ));
        }
        seen.insert(target_of(s));
    }
    if seen != demo_targets() {
        return Err(format!("{metric}: targets {seen:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_with_prometheus() {
    let Some(prometheus) = find_on_path("prometheus") else {
        assert!(
            std::env::var("HSS_EXPORTER_REQUIRE_PROMETHEUS").as_deref() != Ok("1"),
            "prometheus not installed, and HSS_EXPORTER_REQUIRE_PROMETHEUS=1"
        );
        eprintln!("skipped: prometheus not installed (apt-get install prometheus)");
        return;
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    // Declared before the processes so that it is removed after they are killed.
    let dir = tempfile::tempdir().unwrap();

    // The exporter in demo mode; its only stdout line carries the metrics URL.
    let demo_log = dir.path().join("demo.log");
    let mut demo = Proc {
        name: "hss-exporter demo",
        child: Command::new(env!("CARGO_BIN_EXE_hss-exporter"))
            .args(["demo", "--web.listen-address", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&demo_log).unwrap())
            .spawn()
            .expect("start hss-exporter demo"),
        log: demo_log,
    };
    let stdout = demo.child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keeps draining stdout so the demo never blocks on a full pipe.
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
            let _ = tx.send(line.clone());
            line.clear();
        }
        let _ = reader.read_to_end(&mut Vec::new());
    });
    let url = loop {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(30));
        match rx.recv_timeout(wait) {
            Ok(line) => {
                if let Some(url) = metrics_url(&line) {
                    break url;
                }
            }
            Err(e) => panic!("no metrics URL on the demo's stdout: {e}"),
        }
    };
    let exporter_base = url.strip_suffix("/metrics").unwrap().to_string();
    let exporter_addr = exporter_base.strip_prefix("http://").unwrap().to_string();
    assert!(
        exporter_addr.starts_with("127.0.0.1:"),
        "demo listens on {exporter_addr}"
    );

    // Prometheus on loopback with the repository's rules (short `for:`), scraping every second.
    fs::write(dir.path().join("rules.yml"), rules_with_short_for()).unwrap();
    fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - rules.yml\n\
             scrape_configs:\n  - job_name: hss-exporter\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: ['{exporter_addr}']\n"
        ),
    )
    .unwrap();
    let prom_log = dir.path().join("prometheus.log");
    let mut prom = None;
    for _attempt in 0..3 {
        let port = free_port();
        let log = fs::File::create(&prom_log).unwrap();
        let mut p = Proc {
            name: "prometheus",
            child: Command::new(&prometheus)
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start prometheus"),
            log: prom_log.clone(),
        };
        // Give a port clash a moment to show.
        std::thread::sleep(Duration::from_millis(500));
        if p.exited().is_some() && p.log_tail().contains("address already in use") {
            continue;
        }
        prom = Some((p, port));
        break;
    }
    let (mut prom, port) = prom.expect("prometheus could not get a free port");
    let api_owned = Prom {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
        deadline,
    };
    let api = &api_owned;

    // The exporter's health endpoints that the manifests probe.
    let http = api.http.clone();
    api.eventually(
        "the exporter's /-/healthy and /-/ready",
        &mut [&mut demo],
        || {
            let http = http.clone();
            let base = exporter_base.clone();
            async move {
                for path in ["/-/healthy", "/-/ready"] {
                    let r = http
                        .get(format!("{base}{path}"))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    if r.status() != 200 {
                        return Err(format!("{path}: {}", r.status()));
                    }
                }
                Ok(())
            }
        },
    )
    .await;

    api.eventually("prometheus ready", &mut [&mut demo, &mut prom], || {
        let http = http.clone();
        let base = api.base.clone();
        async move {
            let r = http
                .get(format!("{base}/-/ready"))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() == 200 {
                Ok(())
            } else {
                Err(format!("{}", r.status()))
            }
        }
    })
    .await;

    // 1. The target series, with the right labels.
    for metric in [
        "hss_registry_statistics_up",
        "hss_registry_statistics_last_success_timestamp_seconds",
        "hss_registry_access_success",
        "hss_registry_access_fail",
    ] {
        api.eventually(
            &format!("{metric} for every demo target"),
            &mut [&mut demo, &mut prom],
            || async move { check_target_series(metric, &api.query(metric).await?) },
        )
        .await;
    }
    let fail = api.query("hss_registry_access_fail").await.unwrap();
    for s in &fail {
        let (account, _, _, registry_type) = target_of(s);
        if (account.as_str(), registry_type.as_str()) == ("prod", "Harbor") {
            assert!(value(s) >= 2.0, "prod/Harbor should be failing: {s}");
        } else {
            assert_eq!(value(s), 0.0, "only prod/Harbor should be failing: {s}");
        }
    }
    for metric in [
        "hss_exporter_api_requests_total",
        "hss_exporter_poll_errors_total",
        "hss_exporter_api_request_duration_seconds_count",
        "hss_exporter_account_suspended",
    ] {
        api.eventually(
            &format!("{metric} for both accounts"),
            &mut [&mut demo, &mut prom],
            || async move {
                let accounts: BTreeSet<(String, String)> = api
                    .query(metric)
                    .await?
                    .iter()
                    .map(|s| {
                        (
                            label(s, "account").to_string(),
                            label(s, "region").to_string(),
                        )
                    })
                    .collect();
                let want: BTreeSet<(String, String)> =
                    [("prod", "cn-north-4"), ("staging", "ap-southeast-1")]
                        .map(|(a, r)| (a.into(), r.into()))
                        .into();
                if accounts == want {
                    Ok(())
                } else {
                    Err(format!("{metric}: {accounts:?}"))
                }
            },
        )
        .await;
    }
    assert_eq!(
        api.query("hss_exporter_build_info").await.unwrap().len(),
        1,
        "build_info"
    );
    eprintln!(
        "e2e: {:.1?}: the demo's four targets are scraped with the right labels",
        started.elapsed()
    );

    // 2. Every recording rule produces values.
    let rules = yaml_file(RULES);
    let records: Vec<String> = seq_of(&rules["groups"], "groups")
        .iter()
        .flat_map(|g| seq_of(&g["rules"], "rules").iter())
        .filter_map(|r| r["record"].as_str().map(str::to_string))
        .collect();
    assert!(!records.is_empty());
    for record in &records {
        api.eventually(
            &format!("recording rule {record}"),
            &mut [&mut demo, &mut prom],
            || async move {
                let r = api.query(record).await?;
                if r.is_empty() {
                    Err("no data".to_string())
                } else {
                    Ok(())
                }
            },
        )
        .await;
    }
    eprintln!(
        "e2e: {:.1?}: {} recording rules have values",
        started.elapsed(),
        records.len()
    );
    // Every alert expression evaluates against the exporter's real series: a join that
    // matches many to many, or a label the exporter does not have, shows here.
    for rule in seq_of(&rules["groups"], "groups")
        .iter()
        .flat_map(|g| seq_of(&g["rules"], "rules").iter())
        .filter(|r| r["alert"].is_string())
    {
        let (name, expr) = (
            str_of(&rule["alert"], "alert"),
            str_of(&rule["expr"], "expr"),
        );
        if let Err(e) = api.query(expr).await {
            panic!("{name}: the expression does not evaluate: {e}");
        }
    }
    let stale = api
        .query(r#"hss_exporter_stale_after_seconds{job="hss-exporter"}"#)
        .await
        .unwrap();
    assert!(
        stale.len() == 1 && value(&stale[0]) == 120.0,
        "the demo's poll.stale_after (2m) as hss_exporter_stale_after_seconds: {stale:?}"
    );
    let harbor = api
        .query(r#"project_registry_type:hss_registry_access_fail:sum{account="prod",registry_type="Harbor"}"#)
        .await
        .unwrap();
    assert!(harbor.len() == 1 && value(&harbor[0]) >= 2.0, "{harbor:?}");

    // 3. The headline alert fires for prod/Harbor, and for no healthy target.
    api.eventually(
        "HSSRegistryAccessFailing firing for prod/Harbor",
        &mut [&mut demo, &mut prom],
        || async move {
            let alerts = api.alerts().await?;
            let firing = alerts.iter().any(|a| {
                a["labels"]["alertname"] == "HSSRegistryAccessFailing"
                    && a["state"] == "firing"
                    && a["labels"]["account"] == "prod"
                    && a["labels"]["registry_type"] == "Harbor"
                    && a["labels"]["project_id"] == "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
                    && a["labels"]["severity"].is_string()
            });
            if firing {
                Ok(())
            } else {
                Err(format!("alerts: {alerts:?}"))
            }
        },
    )
    .await;
    eprintln!(
        "e2e: {:.1?}: HSSRegistryAccessFailing is firing for prod/Harbor",
        started.elapsed()
    );
    let alerts = api.alerts().await.unwrap();
    for a in &alerts {
        let name = a["labels"]["alertname"].as_str().unwrap_or("");
        if matches!(
            name,
            "HSSRegistryAccessFailing" | "HSSRegistryAccessFailRatioHigh"
        ) {
            assert!(
                a["labels"]["account"] == "prod" && a["labels"]["registry_type"] == "Harbor",
                "{name} active for a healthy target: {a}"
            );
        }
        assert!(
            !matches!(
                name,
                "HSSExporterDown"
                    | "HSSExporterAbsent"
                    | "HSSExporterAccountSuspended"
                    | "HSSExporterConfigReloadFailed"
                    | "HSSRegistryStatisticsStale"
            ),
            "{name} active against a healthy demo: {a}"
        );
        for key in ["summary", "description", "runbook_url"] {
            let text = a["annotations"][key].as_str().unwrap_or("");
            assert!(
                !text.is_empty() && !text.contains("<no value>"),
                "{name}: annotation {key}: {a}"
            );
        }
    }

    // 4. Every template variable finds values (each query with the ones before it filled in,
    //    "All" selected), and with them every dashboard expression evaluates and has data.
    let d = dashboard();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for v in dashboard_variables(&d) {
        let name = v["name"].as_str().unwrap().to_string();
        let (q, label_name) = label_values_query(&substitute(&variable_query(&v), &vars));
        let values: Vec<String> = api
            .eventually(
                &format!("values of the variable {name}: {q}"),
                &mut [&mut demo, &mut prom],
                || {
                    let (q, label_name) = (&q, &label_name);
                    async move {
                        let values: BTreeSet<String> = api
                            .query(q)
                            .await?
                            .iter()
                            .map(|s| label(s, label_name).to_string())
                            .collect();
                        if values.is_empty() {
                            Err("no values".to_string())
                        } else {
                            Ok(values.into_iter().collect())
                        }
                    }
                },
            )
            .await;
        match name.as_str() {
            "job" => assert_eq!(values, ["hss-exporter"], "job values"),
            "instance" => assert_eq!(values, [exporter_addr.as_str()], "instance values"),
            _ => {}
        }
        vars.insert(name, all_of(&v, &values));
    }
    let queries: Vec<(String, String, bool)> = dashboard_targets(&d)
        .into_iter()
        .map(|(p, t)| {
            let range = t["range"].as_bool().unwrap_or(true);
            let name = format!(
                "{} / {}",
                title(&p),
                t["legendFormat"].as_str().unwrap_or("")
            );
            (name, substitute(t["expr"].as_str().unwrap(), &vars), range)
        })
        .collect();
    for (title, q, range) in &queries {
        api.eventually(
            &format!("dashboard query of {title:?}: {q}"),
            &mut [&mut demo, &mut prom],
            || async move {
                if api.query(q).await?.is_empty() {
                    return Err("instant query: no data".into());
                }
                if *range && api.query_range(q).await?.is_empty() {
                    return Err("range query: no data".into());
                }
                Ok(())
            },
        )
        .await;
    }

    eprintln!(
        "e2e: {:.1?}: {} variables have values and {} dashboard queries return data",
        started.elapsed(),
        vars.len(),
        queries.len()
    );

    // The demo's flapping target: prod/Jfrog answers 503 now and then, counted as http_5xx.
    api.eventually(
        "prod http_5xx poll errors (the flapping Jfrog target)",
        &mut [&mut demo, &mut prom],
        || async move {
            let r = api
                .query(r#"hss_exporter_poll_errors_total{account="prod",reason="http_5xx"} > 0"#)
                .await?;
            if r.is_empty() {
                Err("none yet".into())
            } else {
                Ok(())
            }
        },
    )
    .await;

    // 5. The exporter stops: its target goes down, and every stat panel shows "unknown" (no
    //    data) instead of the last numbers, except the count of exporters down, which is 1.
    drop(demo);
    let stats: Vec<(String, String)> = dashboard_targets(&d)
        .into_iter()
        .filter(|(p, _)| p["type"] == "stat")
        .map(|(_, t)| {
            (
                t["legendFormat"].as_str().unwrap_or("").to_string(),
                substitute(t["expr"].as_str().unwrap(), &vars),
            )
        })
        .collect();
    assert!(stats.iter().any(|(legend, _)| legend == "Exporters down"));
    for (legend, q) in &stats {
        api.eventually(
            &format!("stat {legend:?} once the exporter is down: {q}"),
            &mut [&mut prom],
            || async move {
                let r = api.query(q).await?;
                match (legend.as_str(), r.as_slice()) {
                    ("Exporters down", [one]) if value(one) == 1.0 => Ok(()),
                    ("Exporters down", _) => Err(format!("{r:?}")),
                    (_, []) => Ok(()),
                    (_, _) => Err(format!("still a value: {r:?}")),
                }
            },
        )
        .await;
    }
    eprintln!(
        "e2e: {:.1?}: with the exporter stopped, {} stat queries show it down or unknown",
        started.elapsed(),
        stats.len()
    );

    drop(prom);
}
