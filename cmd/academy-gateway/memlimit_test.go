package main

import (
	"fmt"
	"io/fs"
	"testing"
)

func TestContainerMemoryLimit(t *testing.T) {
	const v2, v1 = "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"
	for _, tc := range []struct {
		name       string
		env        string
		files      map[string]string
		want       int64
		wantSource string
	}{
		{"cgroup v2 limit", "", map[string]string{v2: "536870912\n"}, 483183820, v2},
		{"cgroup v2 unlimited", "", map[string]string{v2: "max\n"}, 0, v2},
		{"cgroup v1 limit", "", map[string]string{v1: "268435456\n"}, 241591910, v1},
		{"cgroup v1 unlimited", "", map[string]string{v1: "9223372036854771712\n"}, 0, v1},
		{"garbage", "", map[string]string{v2: "lots\n"}, 0, v2},
		{"no cgroup", "", nil, 0, ""},
		{"GOMEMLIMIT wins", "100MiB", map[string]string{v2: "536870912\n"}, 0, "GOMEMLIMIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			getenv := func(k string) string {
				if k == "GOMEMLIMIT" {
					return tc.env
				}
				return ""
			}
			read := func(name string) ([]byte, error) {
				if s, ok := tc.files[name]; ok {
					return []byte(s), nil
				}
				return nil, fmt.Errorf("open %s: %w", name, fs.ErrNotExist)
			}
			got, source := containerMemoryLimit(getenv, read)
			if got != tc.want || source != tc.wantSource {
				t.Errorf("containerMemoryLimit = %d, %q; want %d, %q", got, source, tc.want, tc.wantSource)
			}
		})
	}
}
