package proxy

import (
	"context"

	"github.com/academy-gateway/academy-gateway/scope"
	"github.com/academy-gateway/academy-gateway/tokens"
)

// decider is docs/reference.md §4 steps 1–3, the one decision both the proxy listener and forward-auth
// (§4.1) make about a request: who is calling, whether the path is one the gateway checks byte
// for byte, whether the key and the connection grant the method's scope, and which access token
// to send (refreshed first when due).
type decider struct {
	tokens        Tokens
	stripPrefixes []string
	staticUser    string
}

// decision is what decide found out, filled in as far as it got, so that a refusal's access
// line still names the user and key.
type decision struct {
	user      string
	keyID     string
	path      string // escaped path to forward, after prefix stripping
	conn      tokens.Connection
	refreshed bool
}

// decide applies §4 steps 1–3 to a request with method and escaped path (no query), whose
// x-api-key header had the values apiKeys. It returns the refusal as an error that classify
// maps to the status and code the caller sees.
func (d *decider) decide(ctx context.Context, method, rawPath string, apiKeys []string, out *decision) error {
	var key tokens.APIKey
	if d.staticUser != "" {
		out.user = d.staticUser
	} else {
		if len(apiKeys) != 1 {
			return tokens.ErrUnknownKey
		}
		var err error
		if key, err = d.tokens.LookupKey(ctx, apiKeys[0]); err != nil {
			return err
		}
		out.user, out.keyID = key.User, key.ID
	}

	if !cleanPath(rawPath) {
		return badRequest("The request path has dot segments, empty segments or encoded separators.", nil)
	}
	out.path = stripPrefix(rawPath, d.stripPrefixes)
	need, ok := scope.ForRequest(method, out.path)
	if !ok {
		return methodNotAllowed(method)
	}
	if need != "" && !key.Allows(need) {
		return insufficient(need, "this API key")
	}
	conn, err := d.tokens.Connection(ctx, out.user)
	if err != nil {
		return err
	}
	if conn.Status == tokens.StatusReauthRequired {
		return tokens.ErrReauthRequired
	}
	if need != "" && !conn.HasScope(need) {
		return insufficient(need, "the user's Academy connection")
	}
	out.conn, out.refreshed, err = d.tokens.Token(ctx, conn)
	return err
}

func newDecider(tok Tokens, stripPrefixes []string, staticUser string) decider {
	return decider{tokens: tok, stripPrefixes: stripPrefixes, staticUser: staticUser}
}
