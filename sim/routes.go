package sim

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/academy-gateway/academy-gateway/credential"
	"github.com/academy-gateway/academy-gateway/scope"
)

// access says what an endpoint demands of the caller.
type access int

const (
	// public endpoints need no token (the OAuth flow itself).
	public access = iota
	// bearer endpoints need a valid access token but no scope (/info, /invalidate).
	bearer
	// scoped endpoints need a valid access token carrying the scope of the method.
	scoped
)

// caller is the authenticated side of a request: a snapshot taken under the
// lock, safe to read without it.
type caller struct {
	token  string      // the access token presented
	conn   *connection // its connection; fields are read or written only with s.mu held
	userID string      // Academy user ID of the connection
	scopes []string    // scopes granted to the connection
}

// handlerFunc handles one method of one endpoint. c is nil on public endpoints.
// A returned error is written by writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *caller) error

// methods maps an HTTP method to its handler. GET also serves HEAD.
type methods map[string]handlerFunc

// routes builds the Server's router. Every route is a path pattern; methods,
// authentication and scopes are checked by endpoint so that all errors share
// one JSON shape.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/authorize", s.endpoint(public, methods{http.MethodGet: s.handleAuthorize}))
	mux.Handle("/token", s.endpoint(public, methods{http.MethodPost: s.handleToken}))
	mux.Handle("/refresh", s.endpoint(public, methods{http.MethodPost: s.handleRefresh}))
	mux.Handle("/info", s.endpoint(bearer, methods{http.MethodGet: s.handleInfo}))
	mux.Handle("/invalidate", s.endpoint(bearer, methods{http.MethodGet: s.handleInvalidate}))

	mux.Handle("/movies", s.endpoint(scoped, methods{
		http.MethodGet:  s.handleListMovies,
		http.MethodPost: s.handleCreateMovie,
	}))
	mux.Handle("/movies/{id}", s.endpoint(scoped, methods{
		http.MethodGet:    s.handleGetMovie,
		http.MethodPut:    s.handleReplaceMovie,
		http.MethodPatch:  s.handlePatchMovie,
		http.MethodDelete: s.handleDeleteMovie,
	}))
	mux.Handle("/genres", s.endpoint(scoped, methods{http.MethodGet: s.handleGenres}))
	mux.Handle("/people", s.endpoint(scoped, methods{http.MethodGet: s.handlePeople}))
	mux.Handle("/organizations", s.endpoint(scoped, methods{http.MethodGet: s.handleOrganizations}))
	mux.Handle("/about", s.endpoint(scoped, methods{http.MethodGet: s.handleAbout}))

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(http.StatusNotFound, "Endpoint %s not found.", r.URL.Path))
	})
	return mux
}

// endpoint wraps the handlers of one path with the method check (405), the
// Bearer check (401) and the scope check (403), in that order.
func (s *Server) endpoint(a access, ms methods) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.serveEndpoint(w, r, a, ms); err != nil {
			writeError(w, err)
		}
	})
}

func (s *Server) serveEndpoint(w http.ResponseWriter, r *http.Request, a access, ms methods) error {
	method := r.Method
	if method == http.MethodHead {
		method = http.MethodGet
	}
	h, ok := ms[method]
	if !ok {
		w.Header().Set("Allow", allowHeader(ms))
		return errorf(http.StatusMethodNotAllowed, "Method %s is not allowed here.", r.Method)
	}
	if a == public {
		return h(w, r, nil)
	}
	c, err := s.authenticate(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		return err
	}
	if a == scoped {
		need, _ := scope.ForRequest(method, "") // never /info: that endpoint needs no scope
		if !slices.Contains(c.scopes, string(need)) {
			// RFC 6750 section 3.1: insufficient_scope names the scope needed.
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_scope", scope=%q`, need))
			return errorf(http.StatusForbidden, "Insufficient scope: %s required.", need)
		}
	}
	return h(w, r, c)
}

// allowHeader lists the methods of ms for the Allow header of a 405.
func allowHeader(ms methods) string {
	var names []string
	for m := range ms {
		names = append(names, m)
		if m == http.MethodGet {
			names = append(names, http.MethodHead)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// authenticate resolves the request's Bearer token to a caller, or returns a
// 401 error saying why it cannot.
func (s *Server) authenticate(r *http.Request) (*caller, error) {
	tok, ok := credential.Bearer(r.Header.Get("Authorization"))
	if !ok {
		return nil, errorf(http.StatusUnauthorized, "Missing Bearer access token.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.access[tok]
	switch {
	case !ok:
		return nil, errorf(http.StatusUnauthorized, "Invalid access token.")
	case at.conn.revoked:
		return nil, errorf(http.StatusUnauthorized, "Access token has been revoked.")
	case at.expired(s.opts.Now()):
		return nil, errorf(http.StatusUnauthorized, "Access token has expired.")
	}
	return &caller{token: tok, conn: at.conn, userID: at.conn.userID, scopes: slices.Clone(at.conn.scopes)}, nil
}

// httpError is an error with the status and the client-safe message to answer with.
type httpError struct {
	Code int
	Msg  string
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.Code, e.Msg) }

// errorf returns an *httpError with a formatted message.
func errorf(code int, format string, args ...any) error {
	return &httpError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// errorBody is the Academy error envelope: {"error":{"message":…,"code":…}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

// writeError is the one place errors become responses. Errors that are not
// *httpError become a generic 500.
func writeError(w http.ResponseWriter, err error) {
	var he *httpError
	if !errors.As(err, &he) {
		he = &httpError{Code: http.StatusInternalServerError, Msg: "Internal server error."}
	}
	writeJSON(w, he.Code, errorBody{Error: errorDetail{Message: he.Msg, Code: he.Code}})
}

// writeJSON writes v as a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"message":"Internal server error.","code":500}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// maxBody bounds the JSON bodies the simulator reads.
const maxBody = 1 << 20

// decodeJSON reads r's body into v, answering 400 for anything that is not
// one JSON value of the right shape.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "The request body must be a JSON object.")
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "The request body must hold one JSON object.")
	}
	return nil
}
