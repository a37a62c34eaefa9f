// Package audit schedules the passes of svcguard's leader-only audits: when
// they run is the same for every audit, what a pass judges is each webhook's
// own business. Package leader decides where they run.
package audit

import (
	"context"
	"time"
)

// Debounce is how long Passes waits after a change before it makes a pass, so
// that a burst of changes (a rollout, an informer resync) makes one pass.
const Debounce = time.Second

// Passes runs pass at once, then every interval and Debounce after each
// signal on changed (nil: none), until ctx (the leader's term) ends.
func Passes(ctx context.Context, interval time.Duration, changed <-chan struct{}, pass func(context.Context)) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		pass(ctx)
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		case <-changed:
			select {
			case <-ctx.Done():
				return
			case <-time.After(Debounce):
			}
		}
	}
}
