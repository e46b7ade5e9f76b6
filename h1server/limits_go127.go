//go:build go1.27

package h1server

import "net/http"

// maxHeaderValues is the most header lines (Host included) the fallback takes in a request.
func maxHeaderValues(s *http.Server) int {
	if s.MaxHeaderValueCount > 0 {
		return s.MaxHeaderValueCount
	}
	return http.DefaultMaxHeaderValueCount
}
