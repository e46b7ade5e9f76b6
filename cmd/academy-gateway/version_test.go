package main

import (
	"runtime/debug"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestVersionOf: stamped values (-ldflags -X) win, the build info fills what was not stamped, and
// without either the output says so instead of printing nothing.
func TestVersionOf(t *testing.T) {
	t.Parallel()
	withVCS := &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}}}
	devel := &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}
	tests := []struct {
		name              string
		stamped, stampedC string
		bi                *debug.BuildInfo
		want              [2]string
	}{
		{"stamped", "v1.2.3", "0123abcd", withVCS, [2]string{"v1.2.3", "0123abcd"}},
		{"stamped version only", "v1.2.3", "", withVCS, [2]string{"v1.2.3", "abc123"}},
		{"build info", "", "", withVCS, [2]string{"v0.3.0", "abc123"}},
		{"devel build without vcs", "", "", devel, [2]string{"(devel)", "unknown"}},
		{"no build info", "", "", nil, [2]string{"(devel)", "unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, c := versionOf(tc.stamped, tc.stampedC, tc.bi)
			if diff := cmp.Diff(tc.want, [2]string{v, c}); diff != "" {
				t.Errorf("versionOf (-want +got):\n%s", diff)
			}
		})
	}
}
