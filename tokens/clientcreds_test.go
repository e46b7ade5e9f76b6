package tokens_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/academy-gateway/academy-gateway/internal/redistest"
	"github.com/academy-gateway/academy-gateway/metrics"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// TestRefreshRefusedClientCredentialsLogsError: when the Academy answers a refresh with 401 (the
// gateway's client id or secret is wrong), the refresh fails without costing the user the
// connection, and an ERROR line names the cause (the configuration keys), never the secret or
// the tokens.
func TestRefreshRefusedClientCredentialsLogsError(t *testing.T) {
	rs := redistest.Start(t)
	academy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"message":"Invalid client credentials.","code":401}}`))
	}))
	t.Cleanup(academy.Close)
	kr, err := tokens.NewKeyring([]string{testKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "test")
	store := tokens.NewStore(rs.Client(t), "agw:", kr, m, nil)
	const secret = "wrong-client-secret-value"
	ac := tokens.NewAcademy(academy.Client(), tokens.AcademyConfig{
		ClientID: "c", ClientSecret: secret, RefreshURL: academy.URL + "/refresh", Backoff: time.Millisecond,
	})
	core, logs := observer.New(zapcore.InfoLevel)
	mgr := tokens.NewManager(store, ac, m, tokens.ManagerOptions{Logger: zap.New(core)})
	now := time.Now()
	c, err := store.PutConnection(context.Background(), tokens.Connection{
		User: "erin", Status: tokens.StatusActive, Scopes: []string{"connect", "read"},
		AccessToken: "at-erin-secret", RefreshToken: "rt-erin-secret",
		IssuedAt: now.Add(-5 * time.Minute), AccessExpiresAt: now.Add(-time.Second),
		RefreshExpiresAt: now.Add(time.Hour), UpdatedAt: now,
	})
	if err != nil {
		t.Fatal(err)
	}

	if _, _, err := mgr.Token(context.Background(), c); !errors.Is(err, tokens.ErrClientCredentials) {
		t.Fatalf("Token error = %v, want ErrClientCredentials", err)
	}
	if stored, err := store.Connection(context.Background(), "erin"); err != nil || stored.Status != tokens.StatusActive {
		t.Errorf("after refused client credentials the connection is %q (%v), want it kept active", stored.Status, err)
	}
	errs := logs.FilterLevelExact(zapcore.ErrorLevel).FilterMessageSnippet("client credentials").All()
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "oauth.client_secret") {
		t.Fatalf("ERROR lines about client credentials: %v, want one naming oauth.client_secret", logs.All())
	}
	for _, e := range logs.All() {
		line := e.Message
		for _, f := range e.Context {
			line += " " + f.String
			if f.Interface != nil {
				if err, ok := f.Interface.(error); ok {
					line += " " + err.Error()
				}
			}
		}
		for _, s := range []string{secret, "at-erin-secret", "rt-erin-secret"} {
			if strings.Contains(line, s) {
				t.Errorf("log line carries a secret: %s", line)
			}
		}
	}
}
