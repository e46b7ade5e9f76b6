//go:build !go1.27

package h1server

import "net/http"

// maxHeaderValues: net/http before Go 1.27 has no limit on header lines.
func maxHeaderValues(*http.Server) int { return -1 }
