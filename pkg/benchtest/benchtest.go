// Package benchtest holds what svcguard's benchmarks share and production code
// never needs.
package benchtest

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// HeapAfterGC returns the bytes of live heap after a full collection; a
// memory benchmark takes the difference around building a cache.
func HeapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// PeakRSS returns the peak resident memory (VmHWM) of process pid in bytes,
// as the kernel counts it against a container's memory limit.
func PeakRSS(pid int) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
