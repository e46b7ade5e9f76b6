package httperr

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		err     *Error
		id      string
		headers map[string]string
	}{
		{"scope", &Error{Status: 403, Code: InsufficientScope, Message: "no", Scope: "delete"}, "r1",
			map[string]string{"WWW-Authenticate": `Bearer error="insufficient_scope", scope="delete"`, "Retry-After": ""}},
		{"405", &Error{Status: 405, Code: MethodNotAllowed, Message: "no", Allow: "GET, HEAD"}, "r2",
			map[string]string{"Allow": "GET, HEAD"}},
		{"503 retry", New(503, TokenStoreUnavailable, "later"), "",
			map[string]string{"Retry-After": "1"}},
		{"502 retry after", &Error{Status: 502, Code: UpstreamUnavailable, Message: "later", RetryAfter: 30}, "r3",
			map[string]string{"Retry-After": "30"}},
		{"401 challenge", &Error{Status: 401, Code: Unauthorized, Message: "token", Challenge: `Bearer realm="x"`}, "",
			map[string]string{"WWW-Authenticate": `Bearer realm="x"`, "Retry-After": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Write(rec, tt.err, tt.id)
			if rec.Code != tt.err.Status {
				t.Errorf("status = %d, want %d", rec.Code, tt.err.Status)
			}
			for k, want := range tt.headers {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			for k, want := range map[string]string{"Content-Type": "application/json", "Cache-Control": "no-store"} {
				if got := rec.Header().Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			var got map[string]map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			want := map[string]map[string]string{"error": {"code": string(tt.err.Code), "message": tt.err.Message}}
			if tt.id != "" {
				want["error"]["request_id"] = tt.id
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("body (-want +got)\n%s", diff)
			}
		})
	}
}

func TestWriteClientClosedSendsNothing(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, New(StatusClientClosed, ClientClosed, "gone"), "r")
	if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Errorf("wrote %d bytes, headers %v", rec.Body.Len(), rec.Header())
	}
}

func TestAsAndUnwrap(t *testing.T) {
	cause := errors.New("dial refused")
	err := fmt.Errorf("lookup: %w", Wrap(http.StatusServiceUnavailable, TokenStoreUnavailable, "later", cause))
	e, ok := As(err)
	if !ok || e.Code != TokenStoreUnavailable {
		t.Fatalf("As = %v, %v", e, ok)
	}
	if !errors.Is(err, cause) {
		t.Error("the cause is not in the chain")
	}
	if _, ok := As(cause); ok {
		t.Error("As found an Error in a plain error")
	}
}

func TestJSON(t *testing.T) {
	got := JSON(BadRequest, `a "quoted" path`)
	want := `{"error":{"code":"bad_request","message":"a \"quoted\" path"}}`
	if got != want {
		t.Errorf("JSON = %s, want %s", got, want)
	}
}
