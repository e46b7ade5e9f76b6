package sim

import (
	"crypto/subtle"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
)

// handleAuthorize serves GET /authorize. A bad client_id or redirect_uri is
// answered with a 400 JSON error and never redirected (RFC 6749 section
// 4.1.2.1); other problems are redirected to redirect_uri as error.message.
// Without a decision it shows the consent page; sim_user=<id or first name>
// grants and sim_deny=1 denies.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request, _ *caller) error {
	q := r.URL.Query()
	if !s.clientIDOK(q.Get("client_id")) {
		return errorf(http.StatusBadRequest, "Unknown client_id.")
	}
	target, err := s.checkRedirectURI(q.Get("redirect_uri"))
	if err != nil {
		return err
	}
	s.mu.Lock()
	echo := s.echoState
	s.mu.Unlock()
	state := ""
	if echo {
		state = q.Get("state")
	}
	fail := func(msg string) error {
		redirectWith(w, r, target, state, "error.message", msg)
		return nil
	}

	if rt := q.Get("response_type"); rt != "code" {
		return fail(fmt.Sprintf("Unsupported response_type %q: only code is supported.", rt))
	}
	scopes, unknown, missingConnect := parseScopes(q.Get("scope"))
	switch {
	case unknown != "":
		return fail(fmt.Sprintf("Unknown scope %q: allowed scopes are connect, read, write and delete.", unknown))
	case missingConnect:
		return fail("The connect scope is required.")
	}
	if q.Get("sim_deny") == "1" {
		return fail("The user denied access.")
	}
	choice := q.Get("sim_user")
	if choice == "" {
		return s.consentPage(w, q, scopes)
	}
	u, ok := s.findUser(choice)
	if !ok {
		return errorf(http.StatusBadRequest, "Unknown user %q.", choice)
	}

	code := newSecret("code_")
	s.mu.Lock()
	s.codes[code] = &authCode{
		clientID:    q.Get("client_id"),
		redirectURI: q.Get("redirect_uri"),
		userID:      u.ID,
		scopes:      scopes,
		expires:     s.opts.Now().Add(s.opts.minutes(CodeMinutes)),
	}
	s.stats.CodesIssued++
	s.mu.Unlock()
	redirectWith(w, r, target, state, "code", code)
	return nil
}

// checkRedirectURI accepts an absolute URI without fragment (RFC 6749
// section 3.1.2), equal to Options.RedirectURI when that is set.
func (s *Server) checkRedirectURI(raw string) (*url.URL, error) {
	if raw == "" {
		return nil, errorf(http.StatusBadRequest, "redirect_uri is required.")
	}
	if s.opts.RedirectURI != "" && raw != s.opts.RedirectURI {
		return nil, errorf(http.StatusBadRequest, "redirect_uri does not match the registered redirect URI.")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" {
		return nil, errorf(http.StatusBadRequest, "redirect_uri must be an absolute URI without fragment.")
	}
	return u, nil
}

// redirectWith answers 302 to target with key=value added to its query,
// plus state when it is not empty.
func redirectWith(w http.ResponseWriter, r *http.Request, target *url.URL, state, key, value string) {
	u := *target
	q := u.Query()
	q.Set(key, value)
	if state != "" {
		q.Set("state", state)
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// consentTemplate is the consent page. Links are query-only relative URLs,
// so they point back at /authorize wherever the Server is mounted.
var consentTemplate = template.Must(template.New("consent").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>Make App Academy: authorize {{.App}}</title></head>
<body>
<p><b>{{.App}}</b> wants access: scopes {{.Scopes}}; connect as:
{{range .Choices}}<a href="{{.Href}}">{{.Label}}</a> | {{end}}<a href="{{.DenyHref}}">Deny</a></p>
</body></html>
`))

type consentChoice struct {
	Label string
	Href  string
}

// consentPage writes the 200 HTML page that offers each demo user and Deny.
func (s *Server) consentPage(w http.ResponseWriter, q url.Values, scopes []string) error {
	link := func(key, value string) string {
		l := url.Values{}
		for k, v := range q {
			if k != "sim_user" && k != "sim_deny" {
				l[k] = v
			}
		}
		l.Set(key, value)
		return "?" + l.Encode()
	}
	data := struct {
		App      string
		Scopes   string
		Choices  []consentChoice
		DenyHref string
	}{App: q.Get("client_id"), Scopes: strings.Join(scopes, " "), DenyHref: link("sim_deny", "1")}
	for _, u := range s.users {
		data.Choices = append(data.Choices, consentChoice{Label: u.Name, Href: link("sim_user", u.ID)})
	}
	var b strings.Builder
	if err := consentTemplate.Execute(&b, data); err != nil {
		return fmt.Errorf("rendering consent page: %w", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(b.String()))
	return nil
}

// tokenRequest is the JSON body of POST /token and POST /refresh.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Code         string `json:"code"`
	RedirectURI  string `json:"redirect_uri"`
	RefreshToken string `json:"refresh_token"`
}

// clientIDOK reports whether id is the configured client ID.
func (s *Server) clientIDOK(id string) bool {
	return subtle.ConstantTimeCompare([]byte(id), []byte(s.opts.ClientID)) == 1
}

// checkClient authenticates the client of a token request: 401 unless both
// the ID and the secret match.
func (s *Server) checkClient(req tokenRequest) error {
	secretOK := subtle.ConstantTimeCompare([]byte(req.ClientSecret), []byte(s.opts.ClientSecret)) == 1
	if !s.clientIDOK(req.ClientID) || !secretOK {
		return errorf(http.StatusUnauthorized, "Invalid client credentials.")
	}
	return nil
}

// readTokenRequest decodes a token request and checks its grant type (501
// when unsupported) and client (401).
func (s *Server) readTokenRequest(w http.ResponseWriter, r *http.Request, grant string) (tokenRequest, error) {
	var req tokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return req, err
	}
	if req.GrantType != grant {
		return req, errorf(http.StatusNotImplemented, "Unsupported grant_type %q: use %s.", req.GrantType, grant)
	}
	return req, s.checkClient(req)
}

// handleToken serves POST /token, the authorization-code exchange. Success
// replaces the user's connection, revoking every earlier token of that user.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request, _ *caller) error {
	req, err := s.readTokenRequest(w, r, "authorization_code")
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[req.Code]
	switch {
	case !ok || c.clientID != req.ClientID:
		return errorf(http.StatusBadRequest, "Invalid authorization code.")
	case c.used:
		return errorf(http.StatusBadRequest, "Authorization code has already been used.")
	case !s.opts.Now().Before(c.expires):
		return errorf(http.StatusBadRequest, "Authorization code has expired.")
	case c.redirectURI != req.RedirectURI:
		return errorf(http.StatusBadRequest, "redirect_uri does not match the one given to /authorize.")
	}
	c.used = true
	res := s.issueTokensLocked(s.connectLocked(c.userID, c.scopes))
	s.stats.TokenExchanges++
	writeTokens(w, res)
	return nil
}

// handleRefresh serves POST /refresh. Success rotates the refresh token: the
// presented one is spent for good, and a new access and refresh token are
// issued on the same connection. The old access token lives until it expires.
func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request, _ *caller) error {
	res, err := s.refreshGrant(w, r)
	s.mu.Lock()
	if err != nil {
		s.stats.RefreshFailures++
	} else {
		s.stats.Refreshes++
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	writeTokens(w, res)
	return nil
}

func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request) (tokenResponse, error) {
	req, err := s.readTokenRequest(w, r, "refresh_token")
	if err != nil {
		return tokenResponse{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failRefresh > 0 {
		s.failRefresh--
		return tokenResponse{}, errorf(http.StatusInternalServerError, "Temporary failure, try again.")
	}
	t, ok := s.refresh[req.RefreshToken]
	switch {
	case !ok:
		return tokenResponse{}, errorf(http.StatusBadRequest, "Invalid refresh token.")
	case t.spent:
		s.stats.ReusedRefreshTokens++
		return tokenResponse{}, errorf(http.StatusBadRequest, "Refresh token has already been used.")
	case t.conn.revoked:
		return tokenResponse{}, errorf(http.StatusBadRequest, "Refresh token has been revoked.")
	case t.expired(s.opts.Now()):
		return tokenResponse{}, errorf(http.StatusBadRequest, "Refresh token has expired.")
	}
	t.spent = true
	return s.issueTokensLocked(t.conn), nil
}

// writeTokens answers 200 with a token response that must not be cached
// (RFC 6749 section 5.1).
func writeTokens(w http.ResponseWriter, res tokenResponse) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, res)
}

// infoResponse is the body of GET /info.
type infoResponse struct {
	ID     string   `json:"id"`
	User   string   `json:"user"`
	Email  string   `json:"email"`
	Scopes []string `json:"scopes"`
}

// handleInfo serves GET /info: who the connection belongs to and what it may do.
func (s *Server) handleInfo(w http.ResponseWriter, _ *http.Request, c *caller) error {
	u, _ := s.findUser(c.userID)
	writeJSON(w, http.StatusOK, infoResponse{ID: u.ID, User: u.Name, Email: u.Email, Scopes: c.scopes})
	return nil
}

// handleInvalidate serves GET /invalidate: it revokes the caller's
// connection, so its access and refresh tokens all stop working.
func (s *Server) handleInvalidate(w http.ResponseWriter, _ *http.Request, c *caller) error {
	s.mu.Lock()
	if c.conn.revoked { // lost a race with another /invalidate or /token
		s.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		return errorf(http.StatusUnauthorized, "Access token has been revoked.")
	}
	c.conn.revoked = true
	if s.conns[c.userID] == c.conn {
		delete(s.conns, c.userID)
	}
	s.stats.Invalidations++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"message": "Access invalidated."})
	return nil
}

// findUser finds a demo user by Academy ID or by lower-case first name.
func (s *Server) findUser(idOrName string) (User, bool) {
	for _, u := range s.users {
		first, _, _ := strings.Cut(u.Name, " ")
		if idOrName == u.ID || idOrName == strings.ToLower(first) {
			return u, true
		}
	}
	return User{}, false
}
