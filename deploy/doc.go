// Package deploy holds the gateway's deployment artefacts and no Go code of its own: the Grafana
// dashboard (grafana/academy-gateway.json), the Prometheus alert rules with their promtool unit
// tests and an example scrape configuration (prometheus/). Its tests check that every query in
// them names only metrics the gateway registers (docs/reference.md §7), that each alert links to a section of
// docs/operations.md, and that promtool accepts the rules, their tests and the configuration.
// forward-auth/ holds the ingress configurations of SPEC §4.1 (nginx, Caddy, Traefik); the nginx
// and Caddy ones run end to end in cmd/academy-gateway (ingress_test.go), Traefik's only has the
// structural test here (Traefik is not in Debian).
package deploy
