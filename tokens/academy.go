package tokens

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"time"
)

// Grant is a token response with its lifetimes turned into absolute times.
type Grant struct {
	AccessToken      string
	RefreshToken     string
	IssuedAt         time.Time
	AccessExpiresAt  time.Time
	RefreshExpiresAt time.Time
}

// Info is the Academy identity of a connection, from GET /info.
type Info struct {
	ID     string   `json:"id"`
	User   string   `json:"user"`
	Scopes []string `json:"scopes"`
}

// APIError is an error answer of the Academy. Errors.Is(err, ErrInvalidGrant) holds for a
// rejected code or refresh token (400 from the token or refresh endpoint), and
// errors.Is(err, ErrClientCredentials) for a refused client id or secret (401 from them).
type APIError struct {
	Op      string // token, refresh, info, invalidate
	Status  int
	Message string
	// RetryAfter is the answer's Retry-After (seconds or an HTTP date) on a 429 or 503; zero:
	// absent or unreadable.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("academy %s: status %d: %s", e.Op, e.Status, e.Message)
}

// Is makes a 400 from the grant endpoints match ErrInvalidGrant: the Academy answers 400 for an
// unknown, expired, spent or revoked code or refresh token, and 401 for bad client credentials,
// which must not cost a user the connection.
func (e *APIError) Is(target error) bool {
	grantOp := e.Op == "token" || e.Op == "refresh"
	switch target {
	case ErrInvalidGrant:
		return grantOp && e.Status == http.StatusBadRequest
	case ErrClientCredentials:
		return grantOp && e.Status == http.StatusUnauthorized
	}
	return false
}

// AcademyConfig locates the Academy's endpoints and the gateway's client registration.
type AcademyConfig struct {
	ClientID, ClientSecret string
	TokenURL, RefreshURL   string
	InfoURL, InvalidateURL string
	// Unit is what one unit of expires_in lasts: a minute at the Academy.
	Unit time.Duration
	// Retries is how many times a failed call is tried again; zero: 2, negative: never.
	Retries int
	// Backoff is the wait before the first retry, doubled each time up to 2s; zero: 100ms.
	Backoff time.Duration
	// Now is the clock; nil: time.Now.
	Now Clock
}

// Academy is a thin client of the Academy's JSON token, refresh, info and invalidate endpoints.
// Off-the-shelf OAuth2 clients post forms and read expiry in seconds; the Academy takes JSON and
// counts minutes.
type Academy struct {
	hc    *http.Client
	cfg   AcademyConfig
	retry Backoff
}

// NewAcademy returns a client that sends its requests with hc, which must have a timeout.
func NewAcademy(hc *http.Client, cfg AcademyConfig) *Academy {
	if cfg.Retries == 0 {
		cfg.Retries = 2
	}
	cfg.Retries = max(cfg.Retries, 0)
	if cfg.Backoff == 0 {
		cfg.Backoff = 100 * time.Millisecond
	}
	if cfg.Unit == 0 {
		cfg.Unit = time.Minute
	}
	return &Academy{hc: hc, cfg: cfg, retry: Backoff{Initial: cfg.Backoff, Max: 2 * time.Second, Attempts: cfg.Retries + 1}}
}

// maxLifetime bounds the token lifetimes accepted from the Academy: a century.
const maxLifetime = 100 * 365 * 24 * time.Hour

type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	ExpiresIn        int64  `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	RefreshExpiresIn int64  `json:"refresh_expires_in"`
}

// Exchange trades an authorization code for tokens.
func (a *Academy) Exchange(ctx context.Context, code, redirectURI string) (Grant, error) {
	return a.grant(ctx, "token", a.cfg.TokenURL, map[string]string{
		"code": code, "client_id": a.cfg.ClientID, "client_secret": a.cfg.ClientSecret,
		"grant_type": "authorization_code", "redirect_uri": redirectURI,
	})
}

// Refresh trades a refresh token for new access and refresh tokens. The old refresh token is
// spent whatever the outcome looks like: never send it twice.
func (a *Academy) Refresh(ctx context.Context, refreshToken string) (Grant, error) {
	return a.grant(ctx, "refresh", a.cfg.RefreshURL, map[string]string{
		"client_id": a.cfg.ClientID, "client_secret": a.cfg.ClientSecret,
		"grant_type": "refresh_token", "refresh_token": refreshToken,
	})
}

func (a *Academy) grant(ctx context.Context, op, url string, body map[string]string) (Grant, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return Grant{}, err
	}
	issued := a.cfg.Now.Now()
	// A code or refresh token is single-use: once the request may have reached the Academy it
	// is never sent again, or a lost answer would be followed by a rejected replay.
	var tr tokenResponse
	if err := a.do(ctx, op, http.MethodPost, url, "", payload, false, &tr); err != nil {
		return Grant{}, err
	}
	if tr.AccessToken == "" || tr.RefreshToken == "" || tr.ExpiresIn <= 0 {
		return Grant{}, fmt.Errorf("academy %s: incomplete token response", op)
	}
	// A lifetime too long for a time.Duration would wrap around into the past (found by
	// FuzzAcademyTokenResponse): refuse it rather than refresh on every request.
	if maxUnits := int64(maxLifetime / a.cfg.Unit); tr.ExpiresIn > maxUnits || tr.RefreshExpiresIn > maxUnits {
		return Grant{}, fmt.Errorf("academy %s: token lifetime out of range", op)
	}
	g := Grant{
		AccessToken:     tr.AccessToken,
		RefreshToken:    tr.RefreshToken,
		IssuedAt:        issued,
		AccessExpiresAt: issued.Add(time.Duration(tr.ExpiresIn) * a.cfg.Unit),
	}
	if tr.RefreshExpiresIn > 0 { // absent: the refresh token's lifetime is unknown
		g.RefreshExpiresAt = issued.Add(time.Duration(tr.RefreshExpiresIn) * a.cfg.Unit)
	}
	return g, nil
}

// Info returns the Academy identity behind accessToken.
func (a *Academy) Info(ctx context.Context, accessToken string) (Info, error) {
	var info Info
	err := a.do(ctx, "info", http.MethodGet, a.cfg.InfoURL, accessToken, nil, true, &info)
	return info, err
}

// Invalidate revokes the connection behind accessToken at the Academy.
func (a *Academy) Invalidate(ctx context.Context, accessToken string) error {
	return a.do(ctx, "invalidate", http.MethodGet, a.cfg.InvalidateURL, accessToken, nil, true, nil)
}

// do sends one call with bounded retries and backoff on network errors and 5xx answers, never
// on 4xx. When replayable is false, a call is retried only if it failed before the request was
// written (a dial error), never after the Academy may have acted on it.
func (a *Academy) do(ctx context.Context, op, method, url, bearer string, body []byte, replayable bool, out any) error {
	for try := 1; ; try++ {
		wrote, retry, err := a.once(ctx, op, method, url, bearer, body, out)
		if err == nil || !retry || a.retry.Last(try) || (wrote && !replayable) {
			return err
		}
		if werr := a.retry.Wait(ctx, try); werr != nil {
			return fmt.Errorf("academy %s: %w (after %w)", op, werr, err)
		}
	}
}

func (a *Academy) once(ctx context.Context, op, method, url, bearer string, body []byte, out any) (wrote, retry bool, err error) {
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { wrote = true }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, url, bytes.NewReader(body))
	if err != nil {
		return false, false, fmt.Errorf("academy %s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return wrote, ctx.Err() == nil, fmt.Errorf("academy %s: %w", op, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return true, true, fmt.Errorf("academy %s: read answer: %w", op, err)
	}
	if resp.StatusCode >= 300 {
		e := &APIError{Op: op, Status: resp.StatusCode, Message: errorMessage(data)}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
			e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), a.cfg.Now.Now())
		}
		// A 503 that names a wait is not retried sooner than it says: left to the caller.
		return true, resp.StatusCode >= 500 && e.RetryAfter == 0, e
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return true, false, fmt.Errorf("academy %s: decode answer: %w", op, err)
		}
	}
	return true, false, nil
}

// retryAfter reads a Retry-After value (RFC 9110 §10.2.3: seconds or an HTTP date) at now;
// zero when absent, unreadable or past.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(n, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// errorMessage extracts the Academy's {"error":{"message"}} or the OAuth2 {"error","error_description"}.
func errorMessage(body []byte) string {
	var academy struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &academy) == nil && academy.Error.Message != "" {
		return academy.Error.Message
	}
	var std struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &std) == nil && std.Error != "" {
		return std.Error + ": " + std.Description
	}
	return "(no error message)"
}
