// Recording rules.
{
  prometheusRules+:: {
    local c = $._config,
    local sel = '{%s}' % c.selector,

    groups+: [
      {
        '#':: |||
          Registries are LEVELS (how many are reachable / unreachable as of the last
          successful poll), never counters: sum them, do not rate() them.
        |||,
        name: 'hss-exporter.rules',
        rules: [
          {
            '#':: 'Registries by access status per project and registry type (summed over enterprise projects).',
            record: 'project_registry_type:hss_registry_access_success:sum',
            expr: 'sum by (account, region, project_id, registry_type) (hss_registry_access_success%s)' % sel,
          },
          {
            record: 'project_registry_type:hss_registry_access_fail:sum',
            expr: 'sum by (account, region, project_id, registry_type) (hss_registry_access_fail%s)' % sel,
          },
          {
            '#':: |||
              Share of the connected registries whose access fails, 0..1. A project and
              registry type without any connected registry has no ratio (not 0, not NaN).
            |||,
            record: 'project_registry_type:hss_registry_access_fail:ratio',
            expr: |||
              project_registry_type:hss_registry_access_fail:sum
                /
              (project_registry_type:hss_registry_access_fail:sum + project_registry_type:hss_registry_access_success:sum > 0)
            |||,
          },
          {
            '#':: 'The same per project, all registry types together.',
            record: 'project:hss_registry_access_success:sum',
            expr: 'sum by (account, region, project_id) (project_registry_type:hss_registry_access_success:sum)',
          },
          {
            record: 'project:hss_registry_access_fail:sum',
            expr: 'sum by (account, region, project_id) (project_registry_type:hss_registry_access_fail:sum)',
          },
          {
            record: 'project:hss_registry_access_fail:ratio',
            expr: |||
              project:hss_registry_access_fail:sum
                /
              (project:hss_registry_access_fail:sum + project:hss_registry_access_success:sum > 0)
            |||,
          },
          {
            '#':: 'Registries HSS can no longer reach, per account.',
            record: 'account:hss_registry_access_fail:sum',
            expr: 'sum by (account, region) (hss_registry_access_fail%s)' % sel,
          },
          {
            '#':: 'Seconds since the last successful poll of each target.',
            record: 'target:hss_registry_statistics_age:seconds',
            expr: 'time() - hss_registry_statistics_last_success_timestamp_seconds%s' % sel,
          },
          {
            '#':: 'Cloud API calls per second by answer (HTTP status, "timeout", "connect").',
            record: 'account_code:hss_exporter_api_requests:rate5m',
            expr: 'sum by (account, region, code) (rate(hss_exporter_api_requests_total%s[5m]))' % sel,
          },
        ],
      },
    ],
  },
}
