package main

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// cgroupLimitFiles are where a container's memory limit is read: cgroup v2, then v1.
var cgroupLimitFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// memoryLimitShare is the part of the container's limit given to the Go heap and stacks as a
// soft limit: the rest is for what the runtime does not count (binary text, thread stacks).
const memoryLimitShare = 0.9

// noCgroupLimit: cgroup v1 reports "no limit" as a page-rounded maximum int64; anything this
// large is no limit.
const noCgroupLimit = int64(1) << 60

// containerMemoryLimit returns the soft memory limit to set (0: none) and where it came from:
// none when GOMEMLIMIT is set (the runtime applied it already) or no cgroup limit is readable;
// else memoryLimitShare of the first cgroup limit found.
func containerMemoryLimit(getenv func(string) string, readFile func(string) ([]byte, error)) (int64, string) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, "GOMEMLIMIT"
	}
	for _, f := range cgroupLimitFiles {
		b, err := readFile(f)
		if err != nil {
			continue
		}
		s := strings.TrimSpace(string(b))
		n, err := strconv.ParseInt(s, 10, 64)
		if s == "max" || err != nil || n <= 0 || n >= noCgroupLimit {
			return 0, f
		}
		return int64(float64(n) * memoryLimitShare), f
	}
	return 0, ""
}

// applyMemoryLimit sets the runtime's soft memory limit from the container's (see
// containerMemoryLimit), so that the garbage collector works harder before the kernel's OOM
// killer would, and logs what it chose. GOGC (default 100) and GOMEMLIMIT keep their usual
// meaning; GOMEMLIMIT wins over the container's limit.
func applyMemoryLimit(log *zap.Logger, getenv func(string) string) {
	limit, source := containerMemoryLimit(getenv, os.ReadFile)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Info("memory limit set from the container's", zap.Int64("bytes", limit), zap.String("source", source))
		return
	}
	log.Debug("no memory limit set by the gateway", zap.String("source", source))
}
