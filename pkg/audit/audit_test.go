package audit

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestPassesRunAtOnceAfterAChangeAndStopWithTheTerm drives Passes with an
// interval too long to matter, so every pass after the first is a change's.
func TestPassesRunAtOnceAfterAChangeAndStopWithTheTerm(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	passes, changed, done := make(chan struct{}, 10), make(chan struct{}), make(chan struct{})
	go func() {
		Passes(ctx, time.Hour, changed, func(context.Context) { passes <- struct{}{} })
		close(done)
	}()

	<-passes // the first pass needs no trigger
	changed <- struct{}{}
	select {
	case <-passes:
	case <-time.After(10 * Debounce):
		t.Fatal("a change made no pass")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Passes did not return when the term ended")
	}
	assert.Empty(t, passes, "exactly one pass per trigger")
}

func TestPassesAlsoRunEveryInterval(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	passes := make(chan struct{}, 10)
	go Passes(ctx, 10*time.Millisecond, nil, func(context.Context) { passes <- struct{}{} })
	for i := 0; i < 3; i++ {
		select {
		case <-passes:
		case <-time.After(10 * time.Second):
			t.Fatalf("pass %d never came with a 10ms interval", i+1)
		}
	}
}
