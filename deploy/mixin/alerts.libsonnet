// Alerts. Every threshold, duration and severity comes from _config
// (config.libsonnet); every alert links its section of deploy/runbooks.md.
{
  prometheusAlerts+:: {
    local c = $._config,
    local sel = '{%s}' % c.selector,
    local withSel(m) = '{%s,%s}' % [c.selector, m],
    local without = std.join(', ', c.instanceLabels),
    local runbook(name) = '%s#%s' % [c.runbookBaseUrl, std.asciiLower(name)],
    // A number as written by hand: 0.2, not 0.20000000000000001.
    local num(x) =
      if x == std.floor(x) then std.toString(x)
      else std.rstripChars(std.rstripChars('%.6f' % x, '0'), '.'),
    local where = '(region {{ $labels.region }}, project {{ $labels.project_id }}, registry type {{ $labels.registry_type }})',

    local alert(name, comment, expr, forDuration, severity, summary, description, keepFiringFor=null) = {
      '#':: comment,
      alert: name,
      expr: expr,
      'for': forDuration,
      labels: { severity: severity },
      annotations: {
        summary: summary,
        description: description,
        runbook_url: runbook(name),
      },
    } + (if keepFiringFor == null then {} else { keep_firing_for: keepFiringFor }),

    groups+: [
      {
        '#':: 'Alerts. Thresholds, durations and severities: deploy/mixin/config.libsonnet.',
        name: 'hss-exporter.alerts',
        rules: [
          alert(
            'HSSRegistryAccessFailing',
            |||
              The headline alert: a connected registry HSS can no longer reach, for two
              polls. The labels of the exporter process (%(without)s) are aggregated away,
              and keep_firing_for bridges the time a restarted exporter needs to poll the
              target again, so a restart neither resolves the alert nor makes it wait out
              `for` again.
            ||| % { without: without },
            'max without (%s) (hss_registry_access_fail%s) > %s' % [without, sel, num(c.accessFailingThreshold)],
            c.accessFailingFor,
            c.accessFailingSeverity,
            'HSS cannot reach {{ $labels.registry_type }} image registries of {{ $labels.account }} ({{ $value }} failing)',
            'Connected {{ $labels.registry_type }} image registries with abnormal access in account {{ $labels.account }} (region {{ $labels.region }}, project {{ $labels.project_id }}): {{ $value }}, for more than %s. Images in these registries are not being scanned.' % c.accessFailingFor,
            keepFiringFor=c.accessKeepFiringFor,
          ),
          alert(
            'HSSRegistryFailing',
            |||
              One registry listed in detail (a project with `registries: true`) fails: the
              alert names it, its address, the cluster that carries its connection and the
              fail_reason HSS gives, joined from hss_registry_info on registry_id. Like the
              headline alert it ignores the exporter's own labels and bridges a restart.
            |||,
            |||
              max without (%(without)s) (
                  hss_registry_fail_reason%(sel)s
                * on (job, instance, %(by)s) group_left (registry_name, registry_type, registry_addr, connect_cluster_id)
                  hss_registry_info%(sel)s
              )
            ||| % { without: without, sel: sel, by: std.join(', ', c.registryLabels) },
            c.registryFailingFor,
            c.registryFailingSeverity,
            'Image registry {{ $labels.registry_name }} of {{ $labels.account }} fails: {{ $labels.reason }}',
            'HSS cannot access the {{ $labels.registry_type }} image registry {{ $labels.registry_name }} ({{ $labels.registry_addr }}, ID {{ $labels.registry_id }}) of account {{ $labels.account }} (region {{ $labels.region }}, project {{ $labels.project_id }}) for more than %s. Reason: {{ $labels.reason }}. Its connection is carried by cluster {{ $labels.connect_cluster_id }}. The runbook has a section for each reason.' % c.registryFailingFor,
            keepFiringFor=c.accessKeepFiringFor,
          ),
          alert(
            'HSSRegistryAccessFailRatioHigh',
            |||
              Most registries of one project and type failing: likely one shared cause
              (the carrying cluster, the network path), not a single broken registry. At
              least %(min)d must fail, so one registry of its kind does not raise it.
            ||| % { min: c.failRatioMinFailing },
            |||
              project_registry_type:hss_registry_access_fail:ratio > %(ratio)s
                and
              project_registry_type:hss_registry_access_fail:sum >= %(min)d
            ||| % { ratio: num(c.failRatioThreshold), min: c.failRatioMinFailing },
            c.failRatioFor,
            c.failRatioSeverity,
            'Most {{ $labels.registry_type }} image registries of {{ $labels.account }} fail',
            '{{ $value | humanizePercentage }} of the connected {{ $labels.registry_type }} image registries in account {{ $labels.account }} (region {{ $labels.region }}, project {{ $labels.project_id }}) have abnormal access, for more than %s.' % c.failRatioFor,
            keepFiringFor=c.accessKeepFiringFor,
          ),
          alert(
            'HSSRegistryAccessFailRatioHigh',
            |||
              The page: %(projects)d or more projects of one %(by)s each have most of their
              registries failing. A cause shared across projects: HSS itself, the network,
              or a cluster carrying several projects' connections.
            ||| % { by: std.join(' and ', c.failRatioCriticalBy), projects: c.failRatioCriticalMinProjects },
            |||
              count by (%(by)s) (
                  project:hss_registry_access_fail:ratio > %(ratio)s
                and
                  project:hss_registry_access_fail:sum >= %(min)d
              ) >= %(projects)d
            ||| % {
              by: std.join(', ', c.failRatioCriticalBy),
              ratio: num(c.failRatioThreshold),
              min: c.failRatioMinFailing,
              projects: c.failRatioCriticalMinProjects,
            },
            c.failRatioFor,
            c.failRatioCriticalSeverity,
            'Most image registries of {{ $value }} projects in {{ $labels.region }} fail',
            'In {{ $value }} projects of region {{ $labels.region }}, more than %s of the connected image registries (%d or more per project) have abnormal access, for more than %s. A cause shared by several projects is likely.' % [
              num(c.failRatioThreshold * 100) + '%',
              c.failRatioMinFailing,
              c.failRatioFor,
            ],
            keepFiringFor=c.accessKeepFiringFor,
          ),
          alert(
            'HSSRegistryStatisticsDown',
            |||
              The exporter cannot poll a target. Its values are kept until
              poll.stale_after, so the access alerts still see the last good numbers
              meanwhile. A flapping target (some polls succeed) resets `for`.
            |||,
            'min without (%s) (hss_registry_statistics_up%s) == 0' % [without, sel],
            c.statisticsDownFor,
            c.statisticsDownSeverity,
            'hss-exporter cannot poll {{ $labels.account }}/{{ $labels.registry_type }}',
            'Every poll of the HSS registry statistics for account {{ $labels.account }} %s has failed for more than %s.' % [where, c.statisticsDownFor],
          ),
          alert(
            'HSSRegistryDetailDown',
            |||
              The exporter cannot list a project's registries. The last good listing is
              kept until poll.stale_after, so HSSRegistryFailing still sees it meanwhile.
            |||,
            'min without (%s) (hss_registry_detail_up%s) == 0' % [without, sel],
            c.registryDetailDownFor,
            c.registryDetailDownSeverity,
            'hss-exporter cannot list the registries of {{ $labels.account }}/{{ $labels.project_id }}',
            'Every listing of the image registries of account {{ $labels.account }} (region {{ $labels.region }}, project {{ $labels.project_id }}) has failed for more than %s.' % c.registryDetailDownFor,
          ),
          alert(
            'HSSRegistryStatisticsStale',
            |||
              No successful poll for longer than the exporter's poll.stale_after, which it
              exports as hss_exporter_stale_after_seconds: the exporter has dropped the
              target's values, so HSSRegistryAccessFailing is blind for it.
            |||,
            |||
              max without (%(without)s) (
                  time() - hss_registry_statistics_last_success_timestamp_seconds%(sel)s
                > on (job, instance) group_left ()
                  hss_exporter_stale_after_seconds%(sel)s
              )
            ||| % { without: without, sel: sel },
            c.statisticsStaleFor,
            c.statisticsStaleSeverity,
            'HSS registry statistics of {{ $labels.account }}/{{ $labels.registry_type }} are stale',
            'The last successful poll for account {{ $labels.account }} %s was {{ $value | humanizeDuration }} ago, longer than the exporter keeps values (poll.stale_after). Its access numbers are no longer exported, so registry access failures of this target go unnoticed.' % where,
          ),
          alert(
            'HSSExporterAccountSuspended',
            |||
              Two authentication failures in a row suspend an account for 5 minutes (the
              API locks a key after more than 5). Still suspended after %s: the retry
              failed too.
            ||| % c.accountSuspendedFor,
            'max without (%s) (hss_exporter_account_suspended%s) == 1' % [without, sel],
            c.accountSuspendedFor,
            c.accountSuspendedSeverity,
            'hss-exporter suspended account {{ $labels.account }} after authentication failures',
            'hss-exporter stopped calling the HSS API for account {{ $labels.account }} (region {{ $labels.region }}) after repeated authentication failures, and it is still suspended after %s. No statistics are collected for this account.' % c.accountSuspendedFor,
          ),
          alert(
            'HSSExporterThrottled',
            |||
              The API answers 429 (APIGW.0308) to a large share of the calls. The
              documented limit is 5 calls/min per user per API.
            |||,
            |||
              sum by (account, region) (rate(hss_exporter_api_requests_total%(sel429)s[%(window)s]))
                /
              sum by (account, region) (rate(hss_exporter_api_requests_total%(sel)s[%(window)s]))
                > %(ratio)s
            ||| % { sel429: withSel('code="429"'), sel: sel, window: c.throttledWindow, ratio: num(c.throttledRatioThreshold) },
            c.throttledFor,
            c.throttledSeverity,
            'HSS API throttles hss-exporter for account {{ $labels.account }}',
            '{{ $value | humanizePercentage }} of the HSS API calls of account {{ $labels.account }} (region {{ $labels.region }}) are answered 429 (APIGW.0308) over the last %s.' % c.throttledWindow,
          ),
          alert(
            'HSSExporterConfigReloadFailed',
            |||
              A reload (SIGHUP, POST /-/reload) refused the file. The previous configuration
              keeps running, but the exporter will not start with this file.
            |||,
            'hss_exporter_config_last_reload_successful%s == 0' % sel,
            c.configReloadFailedFor,
            c.configReloadFailedSeverity,
            'hss-exporter {{ $labels.instance }} refused its new configuration',
            'The last configuration reload of hss-exporter at {{ $labels.instance }} failed, for more than %s. It still runs the previous configuration; the next restart will fail until the file is fixed.' % c.configReloadFailedFor,
          ),
          alert(
            'HSSExporterDown',
            'Prometheus cannot scrape the exporter.',
            'up%s == 0' % sel,
            c.exporterDownFor,
            c.exporterDownSeverity,
            'hss-exporter {{ $labels.instance }} is down',
            'Prometheus has failed to scrape hss-exporter at {{ $labels.instance }} for more than %s. HSS registry access is not monitored.' % c.exporterDownFor,
          ),
          alert(
            'HSSExporterAbsent',
            'The scrape configuration lost the exporter.',
            'absent(up%s)' % sel,
            c.exporterAbsentFor,
            c.exporterAbsentSeverity,
            'hss-exporter is not scraped by Prometheus',
            'Prometheus has no scrape target matching %s for more than %s. HSS registry access is not monitored.' % [c.selector, c.exporterAbsentFor],
          ),
        ],
      },
    ],
  },
}
