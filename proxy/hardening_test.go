package proxy

import (
	"bufio"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/academy-gateway/academy-gateway/httperr"
)

func TestStripUpgrade(t *testing.T) {
	tests := []struct {
		name      string
		in, want  http.Header
		wantFound bool
	}{
		{"none", http.Header{"Connection": {"keep-alive"}}, http.Header{"Connection": {"keep-alive"}}, false},
		{"websocket", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}, http.Header{}, true},
		{"h2c", http.Header{"Connection": {"Upgrade, HTTP2-Settings"}, "Upgrade": {"h2c"}, "Http2-Settings": {"AAMA"}}, http.Header{}, true},
		{"other tokens stay", http.Header{"Connection": {"keep-alive, UPGRADE", "X-Hop"}, "Upgrade": {"websocket"}, "X-Hop": {"1"}},
			http.Header{"Connection": {"keep-alive, X-Hop"}, "X-Hop": {"1"}}, true},
		{"Upgrade without Connection", http.Header{"Upgrade": {"websocket"}}, http.Header{}, true},
		{"token without Upgrade", http.Header{"Connection": {"upgrade"}}, http.Header{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.in.Clone()
			found := stripUpgrade(h)
			if found != tt.wantFound {
				t.Errorf("found = %v, want %v", found, tt.wantFound)
			}
			if diff := cmp.Diff(tt.want, h); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckTarget(t *testing.T) {
	tests := []struct {
		line string
		want httperr.Code // "": accepted
	}{
		{"GET /movies HTTP/1.1", ""},
		{"GET http://other.example/movies HTTP/1.1", ""},
		{"CONNECT other.example:443 HTTP/1.1", httperr.MethodNotAllowed},
		{"OPTIONS * HTTP/1.1", httperr.MethodNotAllowed},
		{"GET * HTTP/1.1", httperr.BadRequest},
		{"DELETE * HTTP/1.1", httperr.BadRequest},
		{"GET http://other.example HTTP/1.1", httperr.BadRequest},
		{"OPTIONS /movies HTTP/1.1", ""}, // the proxy's method check answers it
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(tt.line + "\r\nHost: gw\r\n\r\n")))
			if err != nil {
				t.Fatal(err)
			}
			var got httperr.Code
			if e := checkTarget(r); e != nil {
				got = e.Code
			}
			if got != tt.want {
				t.Errorf("checkTarget = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRefuseUpgrade(t *testing.T) {
	for _, tt := range []struct {
		status  int
		wantErr bool
	}{{101, true}, {200, false}, {400, false}} {
		if err := refuseUpgrade(&http.Response{StatusCode: tt.status}); (err != nil) != tt.wantErr {
			t.Errorf("refuseUpgrade(%d) = %v", tt.status, err)
		}
	}
}
