// Every tunable of the mixin. Override any of them with
//
//   (import 'mixin.libsonnet') + { _config+:: { accessFailingFor: '20m' } }
//
// and render again (deploy/README.md, "The monitoring mixin").
{
  _config+:: {
    // ------------------------------------------------------------------ selection
    // The job Prometheus scrapes the exporter under (prometheus.yml's job_name, or the
    // ServiceMonitor's jobLabel).
    jobName: 'hss-exporter',
    // The matchers every rule puts on the exporter's series.
    selector: 'job="%s"' % self.jobName,
    // Labels that name one exporter process and change when it restarts elsewhere: a
    // Recreate rollout or a node drain gives the pod a new name and address. The alerts
    // about registries and targets aggregate them away, so a restart does not turn a
    // firing alert into a new one that has to wait out its `for` again.
    instanceLabels: ['instance', 'pod'],
    // The exporter's target labels.
    targetLabels: ['account', 'region', 'project_id', 'enterprise_project_id', 'registry_type'],

    // ------------------------------------------------------------------ registry access
    // HSSRegistryAccessFailing: more than this many failing registries on one target.
    accessFailingThreshold: 0,
    // Two polls at the default poll.interval of 5m.
    accessFailingFor: '10m',
    accessFailingSeverity: 'warning',

    // How long HSSRegistryAccessFailing and HSSRegistryAccessFailRatioHigh keep firing
    // once their series are gone. After a restart a target has no value until its first
    // poll; the first round is spread over one poll.interval (5m by default), so the last
    // target comes back up to 5m after the start, and Prometheus sees it at the next
    // scrape (up to 1m later). A restart itself (Recreate rollout, a pod rescheduled on a
    // node drain, an image pull) adds a few minutes. 15m covers all of that with room for
    // one lost scrape or a throttled first round; a real recovery (the value back at 0)
    // is also reported this much later. With a longer poll.interval, raise it to at
    // least poll.interval + 10m.
    accessKeepFiringFor: '15m',

    // HSSRegistryAccessFailRatioHigh (warning), per project and registry type: more than
    // this share of the registries fail ...
    failRatioThreshold: 0.5,
    // ... and at least this many of them, so that one project with a single registry of
    // a type that fails (ratio 1.0) does not raise it; HSSRegistryAccessFailing covers it.
    failRatioMinFailing: 2,
    failRatioFor: '15m',
    failRatioSeverity: 'warning',
    // HSSRegistryAccessFailRatioHigh (critical): in one region, at least this many
    // projects each have most of their registries (all types together) failing, at
    // least failRatioMinFailing of them. A cause shared by several projects (HSS in that
    // region, the network path, a cluster carrying several projects' connections) is
    // worth a page; one project's problem is a warning for working hours.
    failRatioCriticalMinProjects: 2,
    failRatioCriticalBy: ['region'],
    failRatioCriticalSeverity: 'critical',

    // HSSRegistryFailing: one registry listed in detail (a project with `registries:
    // true`) has failed for this long; the alert names it and its fail_reason. Two
    // listings at the default poll.interval of 5m.
    registryFailingFor: '10m',
    registryFailingSeverity: 'warning',
    // The labels that name one registry: what the detail series are joined on.
    registryLabels: ['account', 'region', 'project_id', 'enterprise_project_id', 'registry_id'],

    // ------------------------------------------------------------------ polling
    // HSSRegistryStatisticsDown: every poll of a target failing for this long.
    statisticsDownFor: '20m',
    statisticsDownSeverity: 'warning',
    // HSSRegistryDetailDown: every listing of a project's registries failing for this long.
    registryDetailDownFor: '20m',
    registryDetailDownSeverity: 'warning',
    // HSSRegistryStatisticsStale: no successful poll for longer than the exporter's own
    // poll.stale_after (read from hss_exporter_stale_after_seconds, never repeated
    // here), for this long.
    statisticsStaleFor: '5m',
    statisticsStaleSeverity: 'warning',

    // ------------------------------------------------------------------ the exporter
    // Two authentication failures suspend an account for 5 minutes; 10m means the retry
    // failed too.
    accountSuspendedFor: '10m',
    accountSuspendedSeverity: 'critical',
    // HSSExporterThrottled: more than this share of API calls answered 429 ...
    throttledRatioThreshold: 0.2,
    // ... over this window, for this long.
    throttledWindow: '30m',
    throttledFor: '30m',
    throttledSeverity: 'warning',
    // HSSExporterConfigReloadFailed: a refused (re)load, for this long. The previous
    // configuration keeps running, but the next restart will not start.
    configReloadFailedFor: '10m',
    configReloadFailedSeverity: 'warning',
    exporterDownFor: '5m',
    exporterDownSeverity: 'critical',
    exporterAbsentFor: '10m',
    exporterAbsentSeverity: 'critical',

    // Labels of the PrometheusRule besides app.kubernetes.io/name, e.g. the one your
    // Prometheus resource selects rules by: { release: 'kube-prometheus-stack' }.
    prometheusRuleLabels: {},

    // ------------------------------------------------------------------ links
    // Where deploy/runbooks.md is published; every alert's runbook_url is this plus the
    // anchor of its section (the alert name in lower case).
    runbookBaseUrl: 'https://github.com/hss-exporter/hss-exporter/blob/main/deploy/runbooks.md',
    // The exporter's status page (its `/`) for a value of the `instance` label; the
    // dashboard links each exporter and target to it.
    statusPageScheme: 'http',

    // ------------------------------------------------------------------ dashboard
    dashboardUid: 'hss-exporter',
    dashboardTitle: 'HSS image registry access',
    dashboardTags: ['hss', 'huawei-cloud', 'security', 'hss-exporter'],
    dashboardTimeFrom: 'now-24h',
    dashboardRefresh: '1m',
    // Colours of the age of the last successful poll (seconds). Colours only: the stale
    // alert compares with hss_exporter_stale_after_seconds.
    dashboardAgeWarningSeconds: 900,
    dashboardAgeCriticalSeconds: 1800,
  },
}
