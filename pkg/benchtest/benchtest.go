// Package benchtest holds what svcguard's benchmarks share and production code
// never needs.
package benchtest

import "runtime"

// HeapAfterGC returns the bytes of live heap after a full collection; a
// memory benchmark takes the difference around building a cache.
func HeapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
