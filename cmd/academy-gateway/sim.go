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
	fmt.Fprintf(e.stdout, "Academy API v2 simulator on http://%s (one minute = %s, client id %s)\n", ln.Addr(), *minute, *clientID)
	return serveUntil(ctx, srv, ln)
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
