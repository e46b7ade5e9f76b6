package httperr

import (
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/academy-gateway/academy-gateway/internal/testutil"
	"github.com/google/go-cmp/cmp"
)

// specCodes are the error codes of the product specification (SPEC.md §4 step 6, and forbidden of
// §4.1) with their HTTP status: what legacy callers and ingresses depend on.
var specCodes = map[Code]int{
	InvalidAPIKey:           401,
	NotConnected:            401,
	ReauthorizationRequired: 401,
	InsufficientScope:       403,
	MethodNotAllowed:        405,
	BadRequest:              400,
	PayloadTooLarge:         413,
	UpstreamUnavailable:     502,
	UpstreamTimeout:         504,
	TokenStoreUnavailable:   503,
	Forbidden:               403,
}

// sentCodes is every code a gateway surface sends (ClientClosed is only logged).
var sentCodes = []Code{InvalidAPIKey, NotConnected, ReauthorizationRequired, InsufficientScope, MethodNotAllowed,
	BadRequest, PayloadTooLarge, UpstreamUnavailable, UpstreamTimeout, TokenStoreUnavailable, Forbidden,
	Unauthorized, NotFound, Conflict, Internal}

// TestSpecCodeStrings: the constants spell the specification's codes.
func TestSpecCodeStrings(t *testing.T) {
	want := map[string]int{"invalid_api_key": 401, "not_connected": 401, "reauthorization_required": 401,
		"insufficient_scope": 403, "method_not_allowed": 405, "bad_request": 400, "payload_too_large": 413,
		"upstream_unavailable": 502, "upstream_timeout": 504, "token_store_unavailable": 503, "forbidden": 403}
	got := map[string]int{}
	for c, s := range specCodes {
		got[string(c)] = s
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("codes (-spec +constants):\n%s", diff)
	}
}

var codeRow = regexp.MustCompile("^\\| `([a-z_]+)` \\| ([0-9]{3}) \\|")

// TestReferenceCodes: the error table of docs/reference.md §4 lists every code a surface sends,
// each once, with the status the specification gives it.
func TestReferenceCodes(t *testing.T) {
	section := testutil.ReferenceSection(t, "4. The proxy listener")
	documented := map[Code]int{}
	for line := range strings.SplitSeq(section, "\n") {
		m := codeRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if _, dup := documented[Code(m[1])]; dup {
			t.Errorf("code %s is documented twice", m[1])
		}
		documented[Code(m[1])], _ = strconv.Atoi(m[2])
	}
	for _, c := range sentCodes {
		if _, ok := documented[c]; !ok {
			t.Errorf("code %s is not in the error table of docs/reference.md §4", c)
		}
	}
	if len(documented) != len(sentCodes) {
		t.Errorf("docs/reference.md §4 documents %d codes, the package sends %d", len(documented), len(sentCodes))
	}
	for c, want := range specCodes {
		if got := documented[c]; got != want {
			t.Errorf("docs/reference.md §4: %s is %d, the specification says %d", c, got, want)
		}
	}
}
