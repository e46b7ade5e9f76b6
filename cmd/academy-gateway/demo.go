package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/sim"
)

// demo runs everything on one machine with nothing to set up: an embedded Redis, the Academy
// simulator, the gateway, a demo user onboarded through the real OAuth2 flow and an API key.
func (e env) demo(ctx context.Context, args []string) error {
	fs, _ := e.newFlags("demo")
	proxyAddr := fs.String("proxy-listen", "127.0.0.1:8080", "gateway proxy listener `ADDR`")
	opsAddr := fs.String("ops-listen", "127.0.0.1:9090", "gateway ops listener `ADDR` (metrics, health, admin)")
	simAddr := fs.String("sim-listen", "127.0.0.1:0", "Academy simulator listener `ADDR`")
	minute := fs.Duration("minute", 2*time.Second, "how long one Academy minute lasts; tokens live 5 minutes")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *minute <= 0 {
		return usagef("demo: --minute must be positive")
	}
	began := time.Now()

	lns, err := listenAll(*simAddr, *proxyAddr, *opsAddr)
	if err != nil {
		return fmt.Errorf("demo: %w (choose other ports with --proxy-listen, --ops-listen, --sim-listen)", err)
	}
	simLn, proxyLn, opsLn := lns[0], lns[1], lns[2]
	simURL := "http://" + simLn.Addr().String()
	gatewayURL := "http://" + proxyLn.Addr().String()

	cfg := demoConfig(simURL, gatewayURL, *minute)
	log, access, stopLogs := e.serveLoggers(cfg.Log)
	defer stopLogs()
	simSrv := &http.Server{Handler: sim.New(sim.Options{Minute: *minute}), ReadHeaderTimeout: 10 * time.Second}
	go simSrv.Serve(simLn)
	defer simSrv.Close()

	a, err := newApp(cfg, log, appOptions{managerInterval: 5 * *minute, embeddedRedis: true, accessLog: access})
	if err != nil {
		proxyLn.Close()
		opsLn.Close()
		return err
	}
	defer a.Close()
	errc := make(chan error, 1)
	go func() { errc <- a.serve(ctx, proxyLn, opsLn, nil) }()

	link, _, err := a.onboard.Authorize(ctx, "demo", false)
	if err == nil {
		err = onboardViaHTTP(ctx, link, "john")
	}
	if err != nil {
		return fmt.Errorf("demo: onboard the demo user: %w", err)
	}
	_, key, err := a.store.IssueKey(ctx, "demo", []string{"read", "write"}, "demo key", "")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	log.Info("demo ready", zap.Duration("startup", time.Since(began)))
	printDemo(e.stdout, gatewayURL, "http://"+opsLn.Addr().String(), key, cfg.Security.AdminToken, *minute)
	return <-errc
}

func listenAll(addrs ...string) ([]net.Listener, error) {
	var lns []net.Listener
	for _, addr := range addrs {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, err
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// demoConfig points the gateway at the simulator, with an embedded Redis (empty redis.url),
// fresh random secrets and the simulator's short minute.
func demoConfig(simURL, gatewayURL string, minute time.Duration) config.Config {
	cfg := config.Default()
	cfg.Upstream.BaseURL = simURL
	cfg.OAuth.ClientID, cfg.OAuth.ClientSecret = sim.DefaultClientID, sim.DefaultClientSecret
	cfg.OAuth.AuthorizeURL = simURL + "/authorize"
	cfg.OAuth.TokenURL = simURL + "/token"
	cfg.OAuth.RefreshURL = simURL + "/refresh"
	cfg.OAuth.InvalidateURL = simURL + "/invalidate"
	cfg.OAuth.RedirectURL = gatewayURL + "/oauth/callback"
	cfg.OAuth.ExpiresInUnit = config.Duration(minute)
	cfg.Redis.URL = ""
	cfg.Security.EncryptionKeys = []string{randomB64(32)}
	cfg.Security.AdminToken = randomB64(24)
	cfg.Log.Format = "console"
	return cfg
}

func randomB64(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("read random: " + err.Error()) // crypto/rand never fails on supported platforms
	}
	return base64.StdEncoding.EncodeToString(b)
}

// onboardViaHTTP plays the user's browser through the OAuth2 flow: it opens the onboarding link,
// follows the gateway's redirect to the Academy's consent page, picks the Academy user (the
// simulator's sim_user choice), and follows the redirects back to the gateway's callback.
func onboardViaHTTP(ctx context.Context, link, academyUser string) error {
	return onboardThrough(ctx, http.DefaultTransport, link, academyUser)
}

// onboardThrough is onboardViaHTTP over a given transport (tests pass one that trusts their CA).
func onboardThrough(ctx context.Context, rt http.RoundTripper, link, academyUser string) error {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 10 * time.Second, Transport: rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := get(ctx, client, link)
	if err != nil {
		return err
	}
	consent, err := resp.Location()
	if resp.StatusCode != http.StatusFound || err != nil {
		return fmt.Errorf("onboarding link answered %s, want a redirect to the Academy", resp.Status)
	}
	q := consent.Query()
	q.Set("sim_user", academyUser)
	consent.RawQuery = q.Encode()
	client.CheckRedirect = nil
	if resp, err = get(ctx, client, consent.String()); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback answered %s", resp.Status)
	}
	return nil
}

func get(ctx context.Context, c *http.Client, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, nil
}

func printDemo(w io.Writer, gateway, ops, key, adminToken string, minute time.Duration) {
	q := func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
	movie := url.PathEscape("0c841ade9610")
	fmt.Fprintf(w, `
academy-gateway demo is ready: user "demo" is connected to the simulated Academy as John Doe.
Tokens live 5 Academy minutes of %s each and are refreshed ahead of expiry; try the lines below.

# read (scope read): the movies, through the legacy v1 path
curl -s -H %s %s/api/v1/movies

# write (scope write, allowed for this key): create a movie
curl -s -X POST -H %s -H 'Content-Type: application/json' -d '{"name":"My demo movie"}' %s/api/v1/movies

# delete (scope delete, NOT allowed for this key): 403 insufficient_scope
curl -s -X DELETE -H %s %s/api/v1/movies/%s

# metrics
curl -s %s/metrics | grep ^academy_gateway_

# admin API
curl -s -H %s %s/admin/connections

Ctrl-C stops everything (the embedded Redis keeps nothing).
`, minute, q("x-api-key: "+key), gateway, q("x-api-key: "+key), gateway, q("x-api-key: "+key), gateway, movie,
		ops, q("Authorization: Bearer "+adminToken), ops)
}
