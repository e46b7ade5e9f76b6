package proxy

import "strings"

// cleanPath reports whether an escaped request path is one the gateway will check and forward
// byte for byte: absolute, with no dot or empty segments (a trailing slash is allowed), no
// backslash or control characters, no malformed escapes, and no percent-encoded '/', '\', '.' or NUL that an upstream
// might decode into a different path than the one whose scope was checked.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\' || c < 0x20 || c == 0x7f:
			return false
		case c == '%':
			if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
				return false
			}
			switch strings.ToLower(p[i+1 : i+3]) {
			case "2f", "5c", "2e", "00":
				return false
			}
		}
	}
	rest := p[1:]
	for rest != "" {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "." || seg == ".." || (seg == "" && more) {
			return false
		}
		rest = tail
	}
	return true
}

// stripPrefix removes the first of prefixes that p starts with on a segment boundary, so that
// "/api/v1/movies" lands on "/movies" and "/api/v1" on "/".
func stripPrefix(p string, prefixes []string) string {
	for _, pre := range prefixes {
		if p == pre {
			return "/"
		}
		if rest, ok := strings.CutPrefix(p, pre); ok && rest[0] == '/' {
			return rest
		}
	}
	return p
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
