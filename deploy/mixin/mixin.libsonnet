// The hss-exporter monitoring mixin: recording rules, alerts and the Grafana dashboard,
// in plain jsonnet (no libraries). Fields, as monitoring mixins name them:
//
//   _config            every tunable (config.libsonnet)
//   prometheusRules    { groups: [...] } recording rules (rules.libsonnet)
//   prometheusAlerts   { groups: [...] } alerts (alerts.libsonnet)
//   grafanaDashboards  { 'hss-exporter.json': {...} } (dashboard.libsonnet)
//
// render.sh writes deploy/prometheus/rules.yml, deploy/kubernetes/prometheusrule.yaml
// and deploy/grafana/dashboards/hss-exporter.json from it.
(import 'config.libsonnet')
+ (import 'rules.libsonnet')
+ (import 'alerts.libsonnet')
+ (import 'dashboard.libsonnet')
