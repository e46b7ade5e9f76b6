package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/proxy"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// check-config --connect (docs/reference.md §2) tries what only a live system shows. Each check ends in one
// line, "<name>: ok (<detail>)", "<name>: warning: <reason>" or "<name>: failed: <reason>", and
// the command exits 1 when any check failed. Warnings (a Redis that may evict tokens, an embedded
// Redis) do not fail it.

// checkTimeout bounds each network check, so a silent peer cannot hang check-config.
const checkTimeout = 10 * time.Second

// invalidCode is the authorization code the Academy check sends: no Academy issues it, so a
// token endpoint that accepts the client credentials answers 400 and one that does not, 401.
const invalidCode = "academy-gateway-check-config-invalid-code"

// checkOutcome is how a check ended.
type checkOutcome int

// Check outcomes, from best to worst.
const (
	checkOK checkOutcome = iota
	checkWarning
	checkFailed
)

// checkResult is one line of the --connect report.
type checkResult struct {
	Name    string
	Outcome checkOutcome
	Detail  string // ok: what was found; warning or failed: the reason
}

func (r checkResult) String() string {
	switch r.Outcome {
	case checkOK:
		if r.Detail == "" {
			return r.Name + ": ok"
		}
		return r.Name + ": ok (" + r.Detail + ")"
	case checkWarning:
		return r.Name + ": warning: " + r.Detail
	}
	return r.Name + ": failed: " + r.Detail
}

func passed(name, format string, args ...any) checkResult {
	return checkResult{Name: name, Outcome: checkOK, Detail: fmt.Sprintf(format, args...)}
}

func warned(name, format string, args ...any) checkResult {
	return checkResult{Name: name, Outcome: checkWarning, Detail: fmt.Sprintf(format, args...)}
}

func failed(name, format string, args ...any) checkResult {
	return checkResult{Name: name, Outcome: checkFailed, Detail: fmt.Sprintf(format, args...)}
}

// errChecksFailed is returned (exit status 1) when a --connect check failed.
var errChecksFailed = errors.New("check-config --connect: checks failed")

// connectChecks runs every --connect check of cfg, prints one line per result to w, and returns
// errChecksFailed when any of them failed. The checks are independent and run concurrently; the
// lines come out in a fixed order.
func connectChecks(ctx context.Context, cfg config.Config, w io.Writer) error {
	checks := []func(context.Context, config.Config) []checkResult{
		checkRedis, checkListeners, checkTLSFiles, checkAcademy,
	}
	results := make([][]checkResult, len(checks))
	var wg sync.WaitGroup
	for i, check := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			defer cancel()
			results[i] = check(cctx, cfg)
		})
	}
	wg.Wait()
	failures := 0
	for _, rs := range results {
		for _, r := range rs {
			if r.Outcome == checkFailed {
				failures++
			}
			if _, err := fmt.Fprintln(w, r); err != nil {
				return fmt.Errorf("check-config: write report: %w", err)
			}
		}
	}
	if failures > 0 {
		return fmt.Errorf("%w: %d of them", errChecksFailed, failures)
	}
	return nil
}

// checkRedis connects the way serve does and reports the server version, the topology and
// whether maxmemory-policy could evict tokens.
func checkRedis(ctx context.Context, cfg config.Config) []checkResult {
	const name = "redis"
	if cfg.Redis.URL == "" && len(cfg.Redis.Addrs) == 0 {
		return []checkResult{warned(name, "redis.url and redis.addrs are empty: serve would use an embedded in-process Redis that persists nothing and replicas do not share")}
	}
	a := &app{cfg: cfg, log: zap.NewNop()}
	rdb, err := a.openRedis()
	if err != nil {
		return []checkResult{failed(name, "%v", err)}
	}
	defer rdb.Close()
	defer a.Close()

	var nodes []redisNode
	var mu sync.Mutex
	collect := func(ctx context.Context, c *redis.Client) error {
		addr := c.Options().Addr
		if cfg.Redis.MasterName != "" { // a Sentinel-managed client names no address of its own
			addr = fmt.Sprintf("master %q", cfg.Redis.MasterName)
		}
		info, err := c.Info(ctx).Result()
		if err != nil {
			return fmt.Errorf("INFO on %s: %w", addr, err)
		}
		mu.Lock()
		defer mu.Unlock()
		nodes = append(nodes, parseRedisInfo(addr, info))
		return nil
	}
	var topology string
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, collect)
		topology = "cluster"
	case *redis.Client:
		err = collect(ctx, c)
		topology = "standalone"
		if cfg.Redis.MasterName != "" {
			topology = fmt.Sprintf("sentinel master %q", cfg.Redis.MasterName)
		}
	default:
		err = fmt.Errorf("unexpected client type %T", rdb)
	}
	if err != nil {
		return []checkResult{failed(name, "%v", err)}
	}
	if topology == "cluster" {
		topology = fmt.Sprintf("cluster of %d masters", len(nodes))
	}
	versions := map[string]bool{}
	var vs []string
	for _, n := range nodes {
		if !versions[n.version] {
			versions[n.version] = true
			vs = append(vs, n.version)
		}
	}
	out := []checkResult{passed(name, "Redis %s, %s", strings.Join(vs, "/"), topology)}
	for _, n := range nodes {
		if n.policy != "noeviction" {
			out = append(out, warned(name, "%s has maxmemory-policy %s: under memory pressure Redis may evict stored connections and keys; set maxmemory-policy noeviction",
				n.addr, orUnknown(n.policy)))
		}
	}
	return out
}

// redisNode is what INFO says about one Redis server.
type redisNode struct {
	addr, version, policy string
}

// parseRedisInfo reads redis_version and maxmemory_policy from an INFO answer.
func parseRedisInfo(addr, info string) redisNode {
	n := redisNode{addr: addr}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		k, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		switch k {
		case "redis_version":
			n.version = v
		case "maxmemory_policy":
			n.policy = v
		}
	}
	n.version = orUnknown(n.version)
	return n
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// listenerAddrs returns the configured listeners, key → address, in a fixed order.
func listenerAddrs(cfg config.Config) [][2]string {
	out := [][2]string{{"listen.proxy", cfg.Listen.Proxy}, {"listen.ops", cfg.Listen.Ops}}
	if cfg.Listen.Auth != "" {
		out = append(out, [2]string{"listen.auth", cfg.Listen.Auth})
	}
	return out
}

// checkListeners binds every configured listener address and releases it at once.
func checkListeners(ctx context.Context, cfg config.Config) []checkResult {
	var out []checkResult
	var lc net.ListenConfig
	for _, l := range listenerAddrs(cfg) {
		key, addr := l[0], l[1]
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			out = append(out, failed(key, "%s cannot be bound: %v", addr, unwrapOp(err)))
			continue
		}
		ln.Close()
		out = append(out, passed(key, "%s is free", addr))
	}
	return out
}

// unwrapOp drops the "listen tcp ADDR:" prefix net.OpError adds, which repeats the address.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

// checkTLSFiles loads the listeners' certificate and key, and the CA bundle for rediss://, when
// they are configured.
func checkTLSFiles(_ context.Context, cfg config.Config) []checkResult {
	certFile, keyFile, caFile := cfg.Listen.TLSCertFile, cfg.Listen.TLSKeyFile, cfg.Redis.TLSCAFile
	var out []checkResult
	if certFile != "" || keyFile != "" {
		const name = "listen.tls_cert_file"
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		switch {
		case err != nil:
			out = append(out, failed(name, "the certificate and key do not load: %v", err))
		case pair.Leaf == nil:
			out = append(out, failed(name, "no certificate in %s", certFile))
		case time.Now().After(pair.Leaf.NotAfter):
			out = append(out, failed(name, "the certificate expired on %s", pair.Leaf.NotAfter.UTC().Format(time.RFC3339)))
		default:
			out = append(out, passed(name, "certificate for %s, valid until %s", certNames(pair.Leaf), pair.Leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	if caFile != "" {
		const name = "redis.tls_ca_file"
		if _, n, err := readCABundle(caFile); err != nil {
			out = append(out, failed(name, "%v", err))
		} else {
			out = append(out, passed(name, "a bundle of %d certificates", n))
		}
	}
	return out
}

// certNames is the DNS names of a certificate, else its subject.
func certNames(c *x509.Certificate) string {
	if len(c.DNSNames) > 0 {
		return strings.Join(c.DNSNames, ", ")
	}
	return c.Subject.String()
}

// checkAcademy sends the token endpoint a code no Academy issued, with the configured client
// credentials: 400 means the Academy accepted the client and refused the code, 401 that it
// refused the client.
func checkAcademy(ctx context.Context, cfg config.Config) []checkResult {
	const name = "academy"
	hc := &http.Client{Timeout: min(cfg.Upstream.Timeout.D(), checkTimeout), Transport: proxy.NewTransport(cfg.Upstream.Timeout.D())}
	academy := tokens.NewAcademy(hc, tokens.AcademyConfig{
		ClientID: cfg.OAuth.ClientID, ClientSecret: cfg.OAuth.ClientSecret,
		TokenURL: cfg.OAuth.TokenURL, Unit: cfg.OAuth.ExpiresInUnit.D(), Retries: -1,
	})
	_, err := academy.Exchange(ctx, invalidCode, cfg.OAuth.RedirectURL)
	var apiErr *tokens.APIError
	switch {
	case err == nil:
		return []checkResult{failed(name, "%s accepted a code it never issued: is oauth.token_url the Academy's token endpoint?", cfg.OAuth.TokenURL)}
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusBadRequest:
		return []checkResult{passed(name, "%s accepts the client credentials of %s", cfg.OAuth.TokenURL, cfg.OAuth.ClientID)}
	case errors.As(err, &apiErr) && apiErr.Status == http.StatusUnauthorized:
		return []checkResult{failed(name, "%s refused the client credentials (401): check oauth.client_id and oauth.client_secret", cfg.OAuth.TokenURL)}
	case errors.As(err, &apiErr):
		return []checkResult{failed(name, "%s answered %d to a token request, want 400 (credentials good) or 401 (bad)", cfg.OAuth.TokenURL, apiErr.Status)}
	}
	return []checkResult{failed(name, "%s cannot be reached: %v", cfg.OAuth.TokenURL, err)}
}
