// The Grafana dashboard (Grafana 10+).
//
// Stat panels show current values with instant queries. A value is "unknown" rather than
// a number when part of it is missing: a selected exporter is down (up == 0), or a
// selected target has no values (no successful poll for poll.stale_after, or none yet).
// Graphs use range queries, and the tables link every exporter to its status page.
{
  grafanaDashboards+:: {
    local c = $._config,
    local ds = { type: 'prometheus', uid: '${datasource}' },
    local runbook(name) = '%s#%s' % [c.runbookBaseUrl, std.asciiLower(name)],
    local statusPage(instance) = '%s://%s/' % [c.statusPageScheme, instance],

    // Selectors of the exporter processes, of accounts, and of targets.
    local E = 'job=~"$job",instance=~"$instance"',
    local A = E + ',account=~"$account",region=~"$region"',
    local T = A + ',project_id=~"$project_id",registry_type=~"$registry_type"',

    // Guards: each is non-empty exactly when the selection is partly unknown.
    local exporterDown = 'sum(1 - up{%s}) > 0' % E,
    local targetsWithoutValues = 'count(hss_registry_statistics_up{%s} unless hss_registry_access_fail{%s})' % [T, T],
    // `expr`, or nothing when any of the guards holds.
    local unlessUnknown(expr, guards) =
      '%s\n  unless on () (\n    %s\n  )' % [expr, std.join('\n  or\n    ', guards)],

    local target(expr, legend, refId='A', instant=false, format=null) = {
      datasource: ds,
      editorMode: 'code',
      expr: expr,
      legendFormat: legend,
      range: !instant,
      instant: instant,
      refId: refId,
    } + (if format == null then {} else { format: format }),

    local thresholds(steps) = {
      mode: 'absolute',
      steps: [{ color: steps[0], value: null }] + [
        { color: s[1], value: s[0] }
        for s in steps[1:]
      ],
    },

    local unknown = {
      noValue: 'unknown',
      mappings: [{
        type: 'special',
        options: { match: 'null+nan', result: { text: 'unknown', color: '#808080', index: 0 } },
      }],
    },

    local panelLinks(alerts) = [
      { title: 'Runbook: ' + a, url: runbook(a), targetBlank: true }
      for a in alerts
    ],

    local row(id, title, y) = {
      type: 'row',
      title: title,
      id: id,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y: y },
      panels: [],
    },

    local stat(id, title, description, gridPos, targets, unit, steps, alerts, extra={}) = {
      type: 'stat',
      title: title,
      description: description,
      id: id,
      datasource: ds,
      gridPos: gridPos,
      links: panelLinks(alerts),
      fieldConfig: {
        defaults: {
          unit: unit,
          color: { mode: 'thresholds' },
          thresholds: thresholds(steps),
        } + unknown + extra,
        overrides: [],
      },
      options: {
        colorMode: 'background',
        graphMode: 'none',
        justifyMode: 'auto',
        orientation: 'auto',
        textMode: 'auto',
        reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      },
      targets: targets,
    },

    local timeseries(id, title, description, gridPos, targets, unit='none', stacking='none', drawStyle='line', extra={}) = {
      type: 'timeseries',
      title: title,
      description: description,
      id: id,
      datasource: ds,
      gridPos: gridPos,
      fieldConfig: {
        defaults: {
          unit: unit,
          color: { mode: 'palette-classic' },
          custom: {
            drawStyle: drawStyle,
            lineInterpolation: 'stepAfter',
            lineWidth: 1,
            fillOpacity: 10,
            showPoints: 'never',
            spanNulls: false,
            axisSoftMin: 0,
            stacking: { mode: stacking, group: 'A' },
          },
        } + extra,
        overrides: [],
      },
      options: {
        legend: { displayMode: 'table', placement: 'bottom', showLegend: true, calcs: ['lastNotNull', 'max'] },
        tooltip: { mode: 'multi', sort: 'desc' },
      },
      targets: targets,
    },

    local upDown(up, down) = {
      id: 'mappings',
      value: [{
        type: 'value',
        options: {
          '0': { text: down, color: 'red', index: 0 },
          '1': { text: up, color: 'green', index: 1 },
        },
      }],
    },
    local cellColor(type) = { id: 'custom.cellOptions', value: { type: type } },
    local byName(name, properties) = { matcher: { id: 'byName', options: name }, properties: properties },
    local statusPageLink = {
      id: 'links',
      value: [{ title: 'Status page of ${__value.raw}', url: statusPage('${__value.raw}'), targetBlank: true }],
    },
    local ageColors = {
      id: 'thresholds',
      value: thresholds(['green', [c.dashboardAgeWarningSeconds, 'orange'], [c.dashboardAgeCriticalSeconds, 'red']]),
    },

    local variable(name, label, query, allValue=null) = {
      name: name,
      label: label,
      type: 'query',
      datasource: ds,
      definition: query,
      query: { query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
      refresh: 2,
      regex: '',
      sort: 1,
      multi: true,
      includeAll: true,
      current: { selected: true, text: ['All'], value: ['$__all'] },
      options: [],
      hide: 0,
    } + (if allValue == null then {} else { allValue: allValue }),

    'hss-exporter.json': {
      title: c.dashboardTitle,
      uid: c.dashboardUid,
      description: 'Huawei Cloud HSS image-registry access statistics from hss-exporter. Values read "unknown" while a selected exporter is down or a selected target has no values.',
      tags: c.dashboardTags,
      editable: true,
      graphTooltip: 1,
      timezone: '',
      time: { from: c.dashboardTimeFrom, to: 'now' },
      refresh: c.dashboardRefresh,
      schemaVersion: 39,
      version: 1,
      fiscalYearStartMonth: 0,
      liveNow: false,
      weekStart: '',
      links: [
        {
          title: 'Runbooks',
          type: 'link',
          url: c.runbookBaseUrl,
          icon: 'doc',
          tooltip: 'What each alert means and what to check',
          targetBlank: true,
          asDropdown: false,
          includeVars: false,
          keepTime: false,
          tags: [],
        },
        {
          title: 'Exporter status page',
          type: 'link',
          url: statusPage('${instance}'),
          icon: 'info',
          tooltip: "The exporter's own page: every target, its last values, last error and next poll (select one instance)",
          targetBlank: true,
          asDropdown: false,
          includeVars: false,
          keepTime: false,
          tags: [],
        },
      ],
      annotations: {
        list: [{
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        }],
      },
      templating: {
        list: [
          {
            name: 'datasource',
            label: 'Data source',
            type: 'datasource',
            query: 'prometheus',
            current: {},
            hide: 0,
            includeAll: false,
            multi: false,
            options: [],
            refresh: 1,
            regex: '',
          },
          // No allValue for job and instance: "All" stands for the values found, so
          // that `up{job=~"$job"}` never matches other jobs.
          variable('job', 'Job', 'label_values(hss_exporter_build_info, job)'),
          variable('instance', 'Instance', 'label_values(up{job=~"$job"}, instance)'),
          variable('account', 'Account', 'label_values(hss_registry_statistics_up{%s}, account)' % E, '.*'),
          variable('region', 'Region', 'label_values(hss_registry_statistics_up{%s,account=~"$account"}, region)' % E, '.*'),
          variable('project_id', 'Project', 'label_values(hss_registry_statistics_up{%s}, project_id)' % A, '.*'),
          variable(
            'registry_type',
            'Registry type',
            'label_values(hss_registry_statistics_up{%s,project_id=~"$project_id"}, registry_type)' % A,
            '.*'
          ),
        ],
      },
      panels: [
        row(1, 'Overview', 0),
        stat(
          2,
          'Registries failing',
          'Connected image registries whose access is abnormal, summed over the selected targets, as of now. Unknown while a selected exporter is down or a selected target has no values.',
          { h: 4, w: 4, x: 0, y: 1 },
          [target(unlessUnknown('sum(hss_registry_access_fail{%s})' % T, [exporterDown, targetsWithoutValues]), 'Registries failing', instant=true)],
          'none',
          ['green', [1, 'red']],
          ['HSSRegistryAccessFailing'],
          { decimals: 0 },
        ),
        stat(
          3,
          'Registries accessible',
          'Connected image registries whose access succeeded, summed over the selected targets, as of now. Unknown while a selected exporter is down or a selected target has no values.',
          { h: 4, w: 4, x: 4, y: 1 },
          [target(unlessUnknown('sum(hss_registry_access_success{%s})' % T, [exporterDown, targetsWithoutValues]), 'Registries accessible', instant=true)],
          'none',
          ['green'],
          [],
          { decimals: 0 },
        ),
        stat(
          4,
          'Fail ratio',
          'Share of the connected registries whose access fails: failing / (failing + successful), 0 when no registry is connected. Unknown while a selected exporter is down or a selected target has no values.',
          { h: 4, w: 4, x: 8, y: 1 },
          [target(
            unlessUnknown(
              'sum(hss_registry_access_fail{%s})\n  /\nclamp_min(sum(hss_registry_access_fail{%s}) + sum(hss_registry_access_success{%s}), 1)' % [T, T, T],
              [exporterDown, targetsWithoutValues]
            ),
            'Fail ratio',
            instant=true
          )],
          'percentunit',
          ['green', [0.01, 'orange'], [c.failRatioThreshold, 'red']],
          ['HSSRegistryAccessFailRatioHigh'],
          { decimals: 1 },
        ),
        stat(
          5,
          'Targets down / stale',
          'Exporters down: selected exporters Prometheus cannot scrape. Targets down: targets whose last poll failed. Targets stale: targets without values (no successful poll for poll.stale_after, or none yet). The target counts are unknown while a selected exporter is down.',
          { h: 4, w: 6, x: 12, y: 1 },
          [
            target('sum(1 - up{%s})' % E, 'Exporters down', 'A', instant=true),
            target(unlessUnknown('sum(1 - hss_registry_statistics_up{%s})' % T, [exporterDown]), 'Targets down', 'B', instant=true),
            target(
              unlessUnknown(
                '(\n  count(hss_registry_statistics_up{%s} unless hss_registry_access_fail{%s})\n    or\n  0 * count(hss_registry_statistics_up{%s})\n)' % [T, T, T],
                [exporterDown]
              ),
              'Targets stale',
              'C',
              instant=true
            ),
          ],
          'none',
          ['green', [1, 'red']],
          ['HSSExporterDown', 'HSSRegistryStatisticsDown', 'HSSRegistryStatisticsStale'],
          { decimals: 0 },
        ),
        stat(
          6,
          'Accounts suspended',
          'Accounts the exporter stopped polling after repeated authentication failures. Unknown while a selected exporter is down.',
          { h: 4, w: 3, x: 18, y: 1 },
          [target(unlessUnknown('sum(hss_exporter_account_suspended{%s})' % A, [exporterDown]), 'Accounts suspended', instant=true)],
          'none',
          ['green', [1, 'red']],
          ['HSSExporterAccountSuspended'],
          { decimals: 0 },
        ),
        stat(
          7,
          'Oldest statistics',
          'Age of the oldest last successful poll among the selected targets. Unknown while a selected exporter is down or a selected target has never been polled successfully.',
          { h: 4, w: 3, x: 21, y: 1 },
          [target(
            unlessUnknown(
              'max(time() - hss_registry_statistics_last_success_timestamp_seconds{%s})' % T,
              [exporterDown, 'count(hss_registry_statistics_up{%s} unless hss_registry_statistics_last_success_timestamp_seconds{%s})' % [T, T]]
            ),
            'Oldest statistics',
            instant=true
          )],
          's',
          ['green', [c.dashboardAgeWarningSeconds, 'orange'], [c.dashboardAgeCriticalSeconds, 'red']],
          ['HSSRegistryStatisticsStale'],
        ),

        row(8, 'Registry access', 5),
        timeseries(
          9,
          'Registries with failing access',
          'hss_registry_access_fail per target: registries HSS can no longer reach. Any value above %s for %s raises HSSRegistryAccessFailing.' % [c.accessFailingThreshold, c.accessFailingFor],
          { h: 8, w: 12, x: 0, y: 6 },
          [target('hss_registry_access_fail{%s}' % T, '{{account}} {{project_id}} {{registry_type}}')],
          extra={ decimals: 0 },
        ),
        timeseries(
          10,
          'Registries with successful access',
          'hss_registry_access_success per target.',
          { h: 8, w: 12, x: 12, y: 6 },
          [target('hss_registry_access_success{%s}' % T, '{{account}} {{project_id}} {{registry_type}}')],
          extra={ decimals: 0 },
        ),
        timeseries(
          11,
          'Fail ratio per project and registry type',
          'Failing / (failing + successful) registries. Absent when a project has no connected registry of that type.',
          { h: 8, w: 12, x: 0, y: 14 },
          [target(
            'sum by (account, region, project_id, registry_type) (hss_registry_access_fail{%s})\n  /\n(sum by (account, region, project_id, registry_type) (hss_registry_access_fail{%s} + hss_registry_access_success{%s}) > 0)' % [T, T, T],
            '{{account}} {{project_id}} {{registry_type}}'
          )],
          unit='percentunit',
          extra={ max: 1, min: 0 },
        ),
        {
          type: 'state-timeline',
          title: 'Poll status per target',
          description: 'hss_registry_statistics_up: 1 = last poll succeeded, 0 = failed. A flapping target shows as stripes; gaps mean no data (exporter down or restarting).',
          id: 12,
          datasource: ds,
          gridPos: { h: 8, w: 12, x: 12, y: 14 },
          fieldConfig: {
            defaults: {
              color: { mode: 'thresholds' },
              thresholds: thresholds(['red', [1, 'green']]),
              mappings: upDown('up', 'down').value,
              custom: { fillOpacity: 70, lineWidth: 0 },
            },
            overrides: [],
          },
          options: {
            showValue: 'never',
            mergeValues: true,
            rowHeight: 0.9,
            alignValue: 'left',
            legend: { showLegend: false, displayMode: 'list', placement: 'bottom' },
            tooltip: { mode: 'single', sort: 'none' },
          },
          targets: [target('hss_registry_statistics_up{%s}' % T, '{{account}} {{project_id}} {{registry_type}}')],
        },
        {
          type: 'table',
          title: 'Targets',
          description: 'One row per polled target (account x project x registry type): last poll status, age of the last successful poll, and the registry counts of that poll ("unknown" once the exporter has dropped them). The instance links to the exporter\'s status page.',
          id: 13,
          datasource: ds,
          gridPos: { h: 9, w: 24, x: 0, y: 22 },
          local by = 'max by (instance, account, region, project_id, enterprise_project_id, registry_type)',
          targets: [
            target('%s (hss_registry_statistics_up{%s})' % [by, T], '__auto', 'A', instant=true, format='table'),
            target('%s (time() - hss_registry_statistics_last_success_timestamp_seconds{%s})' % [by, T], '__auto', 'B', instant=true, format='table'),
            target('%s (hss_registry_access_success{%s})' % [by, T], '__auto', 'C', instant=true, format='table'),
            target('%s (hss_registry_access_fail{%s})' % [by, T], '__auto', 'D', instant=true, format='table'),
          ],
          transformations: [
            { id: 'merge', options: {} },
            {
              id: 'organize',
              options: {
                excludeByName: { Time: true },
                indexByName: {
                  account: 0,
                  region: 1,
                  project_id: 2,
                  enterprise_project_id: 3,
                  registry_type: 4,
                  'Value #A': 5,
                  'Value #B': 6,
                  'Value #C': 7,
                  'Value #D': 8,
                  instance: 9,
                },
                renameByName: {
                  'Value #A': 'Poll',
                  'Value #B': 'Last success age',
                  'Value #C': 'Success',
                  'Value #D': 'Fail',
                  enterprise_project_id: 'enterprise project',
                },
              },
            },
          ],
          fieldConfig: {
            defaults: {
              custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true },
            } + unknown,
            overrides: [
              byName('Poll', [upDown('up', 'down'), cellColor('color-background')]),
              byName('Last success age', [{ id: 'unit', value: 's' }, ageColors, cellColor('color-text')]),
              byName('Fail', [{ id: 'thresholds', value: thresholds(['green', [1, 'red']]) }, cellColor('color-text')]),
              byName('instance', [statusPageLink]),
            ],
          },
          options: {
            showHeader: true,
            cellHeight: 'sm',
            footer: { show: false, reducer: ['sum'], fields: '' },
            sortBy: [{ displayName: 'Fail', desc: true }],
          },
        },

        {
          type: 'table',
          title: 'Failing registries',
          description: 'One row per registry whose access fails, for the projects the exporter lists in detail (registries: true): its name, type, address, the cluster that carries its connection, the fail_reason HSS gives and how long ago it last synced. Each reason has a section in the runbook of HSSRegistryFailing.',
          id: 20,
          datasource: ds,
          gridPos: { h: 9, w: 24, x: 0, y: 31 },
          links: panelLinks(['HSSRegistryFailing', 'HSSRegistryDetailDown']),
          local R = A + ',project_id=~"$project_id"',
          local on = 'on (job, instance, %s)' % std.join(', ', c.registryLabels),
          local info = 'group_left (registry_name, registry_type, registry_addr, connect_cluster_id) hss_registry_info{%s}' % R,
          local by = 'max by (instance, account, region, project_id, enterprise_project_id, registry_id, registry_name, registry_type, registry_addr, connect_cluster_id, reason)',
          targets: [
            target('%s (\n  hss_registry_fail_reason{%s}\n    * %s %s\n)' % [by, R, on, info], '__auto', 'A', instant=true, format='table'),
            target(
              '%s (\n  (time() - hss_registry_last_sync_timestamp_seconds{%s})\n    * %s group_left (reason) hss_registry_fail_reason{%s}\n    * %s %s\n)' % [by, R, on, R, on, info],
              '__auto',
              'B',
              instant=true,
              format='table'
            ),
          ],
          transformations: [
            { id: 'merge', options: {} },
            {
              id: 'organize',
              options: {
                excludeByName: { Time: true, 'Value #A': true },
                indexByName: {
                  account: 0,
                  region: 1,
                  project_id: 2,
                  enterprise_project_id: 3,
                  registry_name: 4,
                  registry_type: 5,
                  registry_addr: 6,
                  reason: 7,
                  'Value #B': 8,
                  connect_cluster_id: 9,
                  registry_id: 10,
                  instance: 11,
                },
                renameByName: {
                  'Value #B': 'Last sync',
                  enterprise_project_id: 'enterprise project',
                  registry_name: 'registry',
                  registry_type: 'type',
                  registry_addr: 'address',
                  connect_cluster_id: 'carrying cluster',
                },
              },
            },
          ],
          fieldConfig: {
            defaults: {
              custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true },
              noValue: 'never',
            },
            overrides: [
              byName('Last sync', [{ id: 'unit', value: 's' }, { id: 'decimals', value: 0 }, cellColor('color-text')]),
              byName('reason', [
                { id: 'links', value: [{ title: 'Runbook: what ${__value.raw} means', url: runbook('HSSRegistryFailing'), targetBlank: true }] },
                { id: 'color', value: { mode: 'fixed', fixedColor: 'red' } },
                cellColor('color-text'),
              ]),
              byName('instance', [statusPageLink]),
            ],
          },
          options: {
            showHeader: true,
            cellHeight: 'sm',
            footer: { show: false, reducer: ['sum'], fields: '' },
            sortBy: [{ displayName: 'Last sync', desc: true }],
          },
        },

        row(14, 'Exporter and cloud API', 40),
        {
          type: 'table',
          title: 'Exporters',
          description: 'One row per exporter process: whether Prometheus can scrape it, whether its last configuration (re)load succeeded, when the configuration was loaded, its poll.stale_after and uptime. The instance links to its status page.',
          id: 15,
          datasource: ds,
          gridPos: { h: 6, w: 24, x: 0, y: 41 },
          local by = 'max by (job, instance)',
          targets: [
            target('%s (up{%s})' % [by, E], '__auto', 'A', instant=true, format='table'),
            target('%s (hss_exporter_config_last_reload_successful{%s})' % [by, E], '__auto', 'B', instant=true, format='table'),
            target('%s (time() - hss_exporter_config_last_reload_success_timestamp_seconds{%s})' % [by, E], '__auto', 'C', instant=true, format='table'),
            target('%s (hss_exporter_stale_after_seconds{%s})' % [by, E], '__auto', 'D', instant=true, format='table'),
            target('%s (time() - process_start_time_seconds{%s})' % [by, E], '__auto', 'E', instant=true, format='table'),
          ],
          transformations: [
            { id: 'merge', options: {} },
            {
              id: 'organize',
              options: {
                excludeByName: { Time: true },
                indexByName: {
                  job: 0,
                  instance: 1,
                  'Value #A': 2,
                  'Value #B': 3,
                  'Value #C': 4,
                  'Value #D': 5,
                  'Value #E': 6,
                },
                renameByName: {
                  'Value #A': 'Scrape',
                  'Value #B': 'Last reload',
                  'Value #C': 'Config loaded',
                  'Value #D': 'stale_after',
                  'Value #E': 'Uptime',
                },
              },
            },
          ],
          fieldConfig: {
            defaults: {
              custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true },
            } + unknown,
            overrides: [
              byName('Scrape', [upDown('up', 'down'), cellColor('color-background')]),
              byName('Last reload', [upDown('ok', 'refused'), cellColor('color-background')]),
              byName('Config loaded', [{ id: 'unit', value: 's' }]),
              byName('stale_after', [{ id: 'unit', value: 's' }]),
              byName('Uptime', [{ id: 'unit', value: 's' }]),
              byName('instance', [statusPageLink]),
            ],
          },
          options: {
            showHeader: true,
            cellHeight: 'sm',
            footer: { show: false, reducer: ['sum'], fields: '' },
            sortBy: [{ displayName: 'Scrape', desc: false }],
          },
        },
        timeseries(
          16,
          'API requests by code',
          'Calls of the exporter to the HSS API per minute, by HTTP status ("timeout"/"connect" when there was no answer). The API allows 5 calls/min per user per API; 429 means throttling.',
          { h: 8, w: 12, x: 0, y: 47 },
          [target('sum by (account, region, code) (rate(hss_exporter_api_requests_total{%s}[$__rate_interval])) * 60' % A, '{{account}} {{code}}')],
          unit='suffix: calls/min',
          stacking='normal',
          drawStyle='bars',
        ),
        timeseries(
          17,
          'Poll errors by reason',
          'Failed polls per minute by reason: timeout, connect, auth, throttled, http_4xx, http_5xx, decode.',
          { h: 8, w: 12, x: 12, y: 47 },
          [target('sum by (account, region, reason) (rate(hss_exporter_poll_errors_total{%s}[$__rate_interval])) * 60' % A, '{{account}} {{reason}}')],
          unit='suffix: errors/min',
          stacking='normal',
          drawStyle='bars',
        ),
        timeseries(
          18,
          'API request duration',
          'Latency of the calls to the HSS API (quantiles from the histogram). Gaps mean no call in the window.',
          { h: 8, w: 12, x: 0, y: 55 },
          [
            target(
              'histogram_quantile(%s, sum by (account, region, le) (rate(hss_exporter_api_request_duration_seconds_bucket{%s}[$__rate_interval])))' % [q[1], A],
              '{{account}} p%s' % q[0],
              q[2]
            )
            for q in [['50', '0.5', 'A'], ['90', '0.9', 'B'], ['99', '0.99', 'C']]
          ],
          unit='s',
        ),
        timeseries(
          19,
          'Account suspended',
          'The exporter sets 1 while it suspends an account after repeated authentication failures (the API locks an AK after more than 5 in a row).',
          { h: 8, w: 12, x: 12, y: 55 },
          [target('hss_exporter_account_suspended{%s}' % A, '{{account}} {{region}}')],
          extra={ max: 1, min: 0, decimals: 0 },
        ),
      ],
    },
  },
}
