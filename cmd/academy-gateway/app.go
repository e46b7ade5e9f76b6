package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/academy-gateway/academy-gateway/admin"
	"github.com/academy-gateway/academy-gateway/audit"
	"github.com/academy-gateway/academy-gateway/config"
	"github.com/academy-gateway/academy-gateway/httperr"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/onboard"
	"github.com/academy-gateway/academy-gateway/proxy"
	"github.com/academy-gateway/academy-gateway/tlsreload"
	"github.com/academy-gateway/academy-gateway/tokens"
	"github.com/academy-gateway/academy-gateway/webhooks"
)

// The proxy depends on the manager only through its own narrow interfaces.
var (
	_ proxy.Tokens     = (*tokens.Manager)(nil)
	_ onboard.Store    = (*tokens.Store)(nil)
	_ onboard.Academy  = (*tokens.Academy)(nil)
	_ admin.Store      = (*tokens.Store)(nil)
	_ admin.Revoker    = (*tokens.Manager)(nil)
	_ admin.Authorizer = (*onboard.Service)(nil)
)

// app is the gateway wired from one configuration, in dependency order.
type app struct {
	cfg     config.Config
	log     *zap.Logger
	reg     *prometheus.Registry
	m       *metrics.Metrics
	rdb     redis.UniversalClient
	store   *tokens.Store
	academy *tokens.Academy
	mgr     *tokens.Manager
	onboard *onboard.Service
	queue   *webhooks.Queue      // nil when webhooks are off
	hooks   *webhooks.Dispatcher // nil when webhooks are off
	audit   audit.Logger
	opts    appOptions
	closers []func()
	// watching is closed once the cache-invalidation subscription is live.
	watching chan struct{}
}

// appOptions are what tests and demo change beyond the configuration.
type appOptions struct {
	// managerInterval overrides the period of background token work (zero: 30s).
	managerInterval time.Duration
	// cacheTTL overrides how long cached keys and connections are served (zero: 1s).
	cacheTTL time.Duration
	// webhooks adjusts the webhook dispatcher's options (tests shorten its waits); nil: none.
	webhooks func(*webhooks.Options)
	// tls overrides how the listeners' certificate is reloaded (zero: tlsreload's defaults).
	tls tlsreload.Options
	// accessLog receives the request path's lines (newServeLoggers); nil: the app's logger.
	accessLog *zap.Logger
	// embeddedRedis says the embedded Redis is chosen, not an empty redis.url left by mistake
	// (demo): it is then noted at INFO instead of warned about.
	embeddedRedis bool
}

func newApp(cfg config.Config, log *zap.Logger, opts appOptions) (*app, error) {
	if opts.accessLog == nil {
		opts.accessLog = log
	}
	a := &app{cfg: cfg, log: log, opts: opts, reg: prometheus.NewRegistry(), watching: make(chan struct{})}
	v, _ := buildVersion()
	a.m = metrics.New(a.reg, v)

	rdb, err := a.openRedis()
	if err != nil {
		a.Close()
		return nil, err
	}
	a.rdb = rdb
	a.closers = append(a.closers, func() { rdb.Close() })

	kr, err := tokens.NewKeyring(cfg.Security.EncryptionKeys)
	if err != nil {
		a.Close()
		return nil, usageError{fmt.Errorf("security.encryption_keys: %w", err)}
	}
	a.store = tokens.NewStore(rdb, cfg.Redis.KeyPrefix, kr, a.m, nil)
	a.m.SetConnectionsSource(a.store.CountByStatus)
	a.audit = audit.New(log)
	if cfg.Webhooks.URL != "" {
		a.queue = webhooks.NewQueue(rdb, cfg.Redis.KeyPrefix, cfg.Webhooks.Events)
		a.m.SetWebhookPending(a.queue.Pending)
	}
	base := strings.TrimRight(cfg.Upstream.BaseURL, "/")
	a.academy = tokens.NewAcademy(&http.Client{Timeout: cfg.Upstream.Timeout.D(), Transport: proxy.NewTransport(cfg.Upstream.Timeout.D())},
		tokens.AcademyConfig{
			ClientID: cfg.OAuth.ClientID, ClientSecret: cfg.OAuth.ClientSecret,
			TokenURL: cfg.OAuth.TokenURL, RefreshURL: cfg.OAuth.RefreshURL,
			InfoURL: base + "/info", InvalidateURL: cfg.OAuth.InvalidateURL,
			Unit: cfg.OAuth.ExpiresInUnit.D(),
		})
	a.mgr = tokens.NewManager(a.store, a.academy, a.m, tokens.ManagerOptions{
		RefreshBefore:  cfg.OAuth.RefreshBefore.D(),
		RefreshTimeout: cfg.Upstream.Timeout.D(),
		KeepAlive:      cfg.OAuth.KeepAlive,
		Interval:       opts.managerInterval,
		CacheTTL:       opts.cacheTTL,
		Logger:         log.Named("tokens"),
		OnReauth:       a.onReauth,
	})
	redirect, _ := url.Parse(cfg.OAuth.RedirectURL) // validated by config
	a.onboard = onboard.New(a.store, a.academy, onboard.Options{
		AuthorizeURL: cfg.OAuth.AuthorizeURL, RedirectURL: redirect,
		ClientID: cfg.OAuth.ClientID, Scopes: cfg.OAuth.Scopes,
		Connected: func(user string) { a.mgr.Forget(user, "") },
		Publish:   a.queue.Publish,
		Logger:    log.Named("onboard"),
	})
	if a.hooks, err = a.newDispatcher(opts); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// openRedis connects to the configured Redis, or starts an embedded one when none is configured.
func (a *app) openRedis() (redis.UniversalClient, error) {
	r := a.cfg.Redis
	switch {
	case r.URL != "":
		opts, err := redis.ParseURL(r.URL)
		if err != nil {
			return nil, usageError{&config.Error{Key: "redis.url", Msg: err.Error()}}
		}
		if r.TLSCAFile != "" && opts.TLSConfig != nil { // rediss:// (validated by config)
			if opts.TLSConfig.RootCAs, err = redisCAPool(r.TLSCAFile); err != nil {
				return nil, usageError{err}
			}
		}
		failFast(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.MaxRetries, &opts.DialerRetries)
		return redis.NewClient(opts), nil
	case len(r.Addrs) > 0:
		// Without a master name, addrs can only be Cluster nodes (one server is redis.url), even
		// a single seed address such as a Service name in front of the cluster.
		opts := &redis.UniversalOptions{Addrs: r.Addrs, MasterName: r.MasterName, IsClusterMode: r.MasterName == ""}
		failFast(&opts.DialTimeout, &opts.ReadTimeout, &opts.WriteTimeout, &opts.MaxRetries, &opts.DialerRetries)
		return redis.NewUniversalClient(opts), nil
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	a.closers = append(a.closers, mr.Close)
	if a.opts.embeddedRedis {
		a.log.Info("using an embedded in-process Redis; nothing is persisted", zap.String("addr", mr.Addr()))
	} else {
		a.log.Warn("redis.url is empty: using an embedded in-process Redis; nothing is persisted and replicas do not share it", zap.String("addr", mr.Addr()))
	}
	return redis.NewClient(&redis.Options{Addr: mr.Addr()}), nil
}

// failFast sets timeouts and retries the URL left unset to values for a request path: a Redis
// that does not answer within a second is treated as down (the cache and 503s take over)
// rather than held on to for go-redis's defaults of 5 s dials, 5 dial attempts and 3 retries.
func failFast(dial, read, write *time.Duration, retries, dialRetries *int) {
	for _, d := range []*time.Duration{dial, read, write} {
		if *d == 0 {
			*d = time.Second
		}
	}
	for _, n := range []*int{retries, dialRetries} {
		if *n == 0 {
			*n = 1
		}
	}
}

// Close releases what newApp opened, last first.
func (a *app) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

// proxyHandler serves the proxy listener: the onboarding pages at their exact paths, everything
// else to the proxy. Paths are neither cleaned nor decoded: the proxy checks the raw path itself.
// A switch rather than a router: a router's per-request copy of the request and its variables
// cost about 2 % of the CPU of a proxied request.
func (a *app) proxyHandler() http.Handler {
	upstream, _ := url.Parse(a.cfg.Upstream.BaseURL) // validated by config
	opts := proxy.Options{
		Upstream:      upstream,
		StripPrefixes: a.cfg.Upstream.StripPrefixes,
		Transport:     proxy.NewUpstreamTransport(upstream, a.cfg.Upstream.Timeout.D()),
		Metrics:       a.m,
		Logger:        a.opts.accessLog.Named("access"),
		MaxBodyBytes:  a.cfg.Server.MaxBodyBytes,
		StaticUser:    a.staticUser(),
	}
	p := proxy.New(a.mgr, opts)
	callback := a.onboard.CallbackPath()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var page http.HandlerFunc
		switch r.URL.EscapedPath() {
		case onboard.StartPath:
			page = a.onboard.Start
		case callback:
			page = a.onboard.Callback
		default:
			p.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodGet {
			httperr.Write(w, &httperr.Error{Status: http.StatusMethodNotAllowed, Code: httperr.MethodNotAllowed,
				Message: "Onboarding pages are fetched with GET.", Allow: http.MethodGet}, "")
			return
		}
		page(w, r)
	})
	return proxy.Harden(h, proxy.HardenOptions{WriteStall: a.cfg.Server.ReadTimeout.D(), Metrics: a.m, Logger: opts.Logger})
}

// staticUser is the user every request acts for in identity.mode static, else "".
func (a *app) staticUser() string {
	if a.cfg.Identity.Mode == config.ModeStatic {
		return a.cfg.Identity.StaticUser
	}
	return ""
}

// authHandler serves the auth listener: forward-auth checks of an ingress (docs/reference.md §4.1), decided
// as the proxy listener decides.
func (a *app) authHandler() http.Handler {
	opts := proxy.ForwardAuthOptions{
		StripPrefixes: a.cfg.Upstream.StripPrefixes,
		Token:         a.cfg.Security.ForwardAuthToken,
		Metrics:       a.m,
		Logger:        a.opts.accessLog.Named("forward_auth"),
		StaticUser:    a.staticUser(),
	}
	// Harden's refusals are logged, not counted: its counter is the proxy listener's.
	return proxy.Harden(proxy.NewForwardAuth(a.mgr, opts), proxy.HardenOptions{WriteStall: a.cfg.Server.ReadTimeout.D(), Logger: opts.Logger})
}

// loopbackAddr reports whether a listen address ("host:port") can only be reached from this
// machine: an empty host listens on every interface.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// opsHandler serves the ops listener: metrics, health and (when enabled) the admin API.
func (a *app) opsHandler() http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = jsonError(httperr.New(http.StatusNotFound, httperr.NotFound, "No such endpoint on the ops listener."))
	// Every ops endpoint outside /admin/ (which routes its own methods) takes GET only.
	r.MethodNotAllowedHandler = jsonError(&httperr.Error{Status: http.StatusMethodNotAllowed, Code: httperr.MethodNotAllowed,
		Message: "This endpoint does not take that method.", Allow: http.MethodGet})
	r.Path("/metrics").Methods(http.MethodGet).Handler(promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	r.Path("/healthz").Methods(http.MethodGet).HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	r.Path("/readyz").Methods(http.MethodGet).HandlerFunc(a.ready)
	r.PathPrefix("/admin/").Handler(admin.New(adminStore{a.store, a}, revoker{a}, a.onboard,
		admin.Options{Token: a.cfg.Security.AdminToken, Logger: a.log.Named("admin"), Audit: a.audit}))
	return r
}

// jsonError answers every request with e, so the ops router's own refusals are JSON like every
// other gateway error rather than the router's plain text.
func jsonError(e *httperr.Error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { httperr.Write(w, e, "") })
}

// ready answers 200 when Redis answers within a second, else 503 with the reason: what the
// Redis client said (the runbook's first diagnostic step reads it).
func (a *app) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := a.store.Ping(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: redis: %v\n", redisCause(err))
		return
	}
	io.WriteString(w, "ready\n")
}

// redisCause returns what the Redis client said, without the store's own wrapping.
func redisCause(err error) error {
	if se, ok := errors.AsType[*tokens.StoreError](err); ok {
		return se.Err
	}
	return err
}

// serve runs the listeners (authLn, the forward-auth listener, only when not nil) and the token
// manager until ctx ends, then drains in-flight requests for at most server.shutdown_timeout.
func (a *app) serve(ctx context.Context, proxyLn, opsLn, authLn net.Listener) error {
	tlsConfig, err := a.listenerTLS(a.opts.tls)
	if err != nil {
		for _, ln := range []net.Listener{proxyLn, opsLn, authLn} {
			if ln != nil {
				ln.Close()
			}
		}
		return err
	}
	// The proxy and auth listeners face callers (TLS when configured); ops stays plain HTTP.
	servers := []server{callerServer(newServer(a.cfg.Server, a.proxyHandler(), a.log.Named("proxy")), tlsConfig),
		newServer(a.cfg.Server, a.opsHandler(), a.log.Named("ops"))}
	lns := []net.Listener{proxyLn, opsLn}
	if authLn != nil {
		auth := callerServer(newServer(a.cfg.Server, a.authHandler(), a.log.Named("auth")), tlsConfig)
		servers, lns = append(servers, auth), append(lns, authLn)
		if a.cfg.Security.ForwardAuthToken == "" && !loopbackAddr(a.cfg.Listen.Auth) {
			a.log.Warn("listen.auth is not a loopback address and security.forward_auth_token is empty: "+
				"anyone who reaches the auth listener gets users' access tokens; restrict it to the ingress",
				zap.String("auth", authLn.Addr().String()))
		}
	}
	errc := make(chan error, len(servers))
	for i, ln := range lns {
		go func() { errc <- servers[i].Serve(ln) }()
	}
	mctx, stopManager := context.WithCancel(ctx)
	var background sync.WaitGroup
	background.Go(func() { a.mgr.Run(mctx) })
	if a.hooks != nil {
		background.Go(func() { a.hooks.Run(mctx) })
	}
	var once sync.Once
	background.Go(func() { a.mgr.Watch(mctx, func() { once.Do(func() { close(a.watching) }) }) })
	fields := []zap.Field{zap.String("proxy", proxyLn.Addr().String()), zap.String("ops", opsLn.Addr().String()),
		zap.Bool("tls", tlsConfig != nil), zap.String("upstream", a.cfg.Upstream.BaseURL)}
	if authLn != nil {
		fields = append(fields, zap.String("auth", authLn.Addr().String()))
	}
	a.log.Info("gateway serving", fields...)

	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("serve: %w", err)
	}
	a.log.Info("shutting down", zap.Duration("timeout", a.cfg.Server.ShutdownTimeout.D()))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Server.ShutdownTimeout.D())
	defer cancel()
	for _, s := range servers {
		if serr := s.Shutdown(sctx); serr != nil && err == nil {
			err = fmt.Errorf("shutdown: %w", serr)
		}
	}
	stopManager()
	background.Wait()
	return err
}

// serve is the serve command.
func (e env) serve(ctx context.Context, args []string) error {
	fs, path := e.newFlags("serve")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := e.loadConfig(*path)
	if err != nil {
		return err
	}
	log, access, stopLogs := e.serveLoggers(cfg.Log)
	defer stopLogs()
	applyMemoryLimit(log, e.getenv)
	keepHeapFloor(e.getenv, heapFloor, ctx.Done())
	a, err := newApp(cfg, log, appOptions{accessLog: access})
	if err != nil {
		return err
	}
	defer a.Close()
	proxyLn, err := net.Listen("tcp", cfg.Listen.Proxy)
	if err != nil {
		return fmt.Errorf("listen.proxy: %w", err)
	}
	opsLn, err := net.Listen("tcp", cfg.Listen.Ops)
	if err != nil {
		proxyLn.Close()
		return fmt.Errorf("listen.ops: %w", err)
	}
	var authLn net.Listener
	if cfg.Listen.Auth != "" {
		if authLn, err = net.Listen("tcp", cfg.Listen.Auth); err != nil {
			proxyLn.Close()
			opsLn.Close()
			return fmt.Errorf("listen.auth: %w", err)
		}
	}
	return a.serve(ctx, proxyLn, opsLn, authLn)
}
