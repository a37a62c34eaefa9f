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
	return statusBytes(pid, "VmHWM")
}

// RSS returns the resident memory (VmRSS) of process pid in bytes now.
func RSS(pid int) (uint64, error) {
	return statusBytes(pid, "VmRSS")
}

// statusBytes reads a "kB" field of /proc/PID/status.
func statusBytes(pid int, field string) (uint64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// CPUSeconds is the user and system CPU time process pid has used.
func CPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, err := strconv.ParseFloat(fields[11], 64)
	if err != nil {
		return 0, err
	}
	stime, err := strconv.ParseFloat(fields[12], 64)
	if err != nil {
		return 0, err
	}
	return (utime + stime) / 100, nil // USER_HZ is 100 on Linux
}
