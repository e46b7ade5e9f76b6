package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/academy-gateway/academy-gateway/sim"
)

// sim runs the Academy API v2 simulator standalone.
func (e env) sim(ctx context.Context, args []string) error {
	fs, _ := e.newFlags("sim")
	listen := fs.String("listen", "127.0.0.1:8081", "`ADDR` to serve on")
	minute := fs.Duration("minute", time.Minute, "how long one Academy minute lasts (1s makes expires_in: 5 last 5 s)")
	clientID := fs.String("client-id", sim.DefaultClientID, "the client `ID` the simulator accepts")
	clientSecret := fs.String("client-secret", sim.DefaultClientSecret, "the client `SECRET` the simulator accepts")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *minute <= 0 {
		return usagef("sim: --minute must be positive")
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	srv := &http.Server{Handler: sim.New(sim.Options{Minute: *minute, ClientID: *clientID, ClientSecret: *clientSecret}),
		ReadHeaderTimeout: 10 * time.Second}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(e.stdout, "Academy API v2 simulator on %s (one Academy minute lasts %s)\n\n", base, *minute)
	fmt.Fprint(e.stdout, simConfig(base, *minute, *clientID, *clientSecret))
	return serveUntil(ctx, srv, ln)
}

// simConfig is the gateway configuration that matches a simulator at base: its endpoints, its
// client credentials and, above all, oauth.expires_in_unit equal to the simulator's minute, or
// the gateway would believe tokens live longer than they do. It is complete apart from the
// encryption key (and Redis, at its default).
func simConfig(base string, minute time.Duration, clientID, clientSecret string) string {
	secret := fmt.Sprintf("%q", clientSecret)
	if clientSecret != sim.DefaultClientSecret {
		secret = `"${ACADEMY_CLIENT_SECRET}"  # the --client-secret given to sim`
	}
	return fmt.Sprintf(`# A gateway configuration for this simulator (config.yaml); then:
#   export ACADEMY_GATEWAY_ENCRYPTION_KEY=$(openssl rand -base64 32)
#   academy-gateway serve --config config.yaml
upstream:
  base_url: %[1]q
oauth:
  client_id: %[2]q
  client_secret: %[3]s
  authorize_url: "%[1]s/authorize"
  token_url: "%[1]s/token"
  refresh_url: "%[1]s/refresh"
  invalidate_url: "%[1]s/invalidate"
  redirect_url: "http://localhost:8080/oauth/callback"
  expires_in_unit: %[4]s          # = sim --minute: one Academy minute
redis:
  url: "redis://localhost:6379/0"  # or "" for an embedded Redis that keeps nothing
security:
  encryption_keys: ["${ACADEMY_GATEWAY_ENCRYPTION_KEY}"]
`, base, clientID, secret, minute)
}

// serveUntil serves srv on ln until ctx ends, then shuts it down within 5 s.
func serveUntil(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
