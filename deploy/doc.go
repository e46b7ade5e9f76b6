// Package deploy holds the gateway's deployment artefacts and no Go code of its own: the Grafana
// dashboard (grafana/academy-gateway.json), the Prometheus alert rules with their promtool unit
// tests and an example scrape configuration (prometheus/). Its tests check that every query in
// them names only metrics the gateway registers (docs/reference.md §7), that each alert links to a section of
// docs/operations.md, and that promtool accepts the rules, their tests and the configuration.
package deploy
