// Package deploy holds the gateway's deployment artefacts and no Go code of its own: the Helm
// chart (helm/academy-gateway) with values files for central, sidecar and forward-auth use, the
// compose file (compose/), the Grafana dashboard (grafana/academy-gateway.json), the Prometheus
// alert rules with their promtool unit tests and an example scrape configuration (prometheus/),
// and the ingress configurations of forward-auth mode (forward-auth/: nginx, Caddy, Traefik; the
// nginx and Caddy ones run end to end in cmd/academy-gateway's ingress_test.go, Traefik's has only
// the structural test here, Traefik not being in Debian).
//
// It is a Go module of its own, so that helm and the Kubernetes API types its tests need stay
// out of the gateway's go.mod; the root module's go test ./... does not enter it. Run its tests
// with (cd deploy && go test -race -count=1 ./...). They check that every query in the dashboard
// and the alerts names only metrics the gateway registers (docs/reference.md §7), that each alert links to a section of
// docs/operations.md, that promtool accepts the rules, their tests and the configuration, that
// helm lint and helm template accept the chart with every values file, that every rendered
// object decodes strictly into its Kubernetes API type, and that the gateway configuration each
// values file renders passes the config package's validation, as check-config does.
package deploy
