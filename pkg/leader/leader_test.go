package leader

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

func TestWithoutElectionTheTasksRunUntilRelease(t *testing.T) {
	e, err := New(nil, Options{}, logr.Discard())
	require.NoError(t, err)
	started, stopped := make(chan struct{}), make(chan struct{})
	e.Add(manager.RunnableFunc(func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		close(stopped)
		return nil
	}))
	done := make(chan error, 1)
	go func() { done <- e.Start(context.Background()) }()

	<-started
	assert.True(t, e.Leading(), "with --leader-elect off this replica runs the tasks")
	e.Release()
	<-stopped
	require.NoError(t, <-done)
	assert.False(t, e.Leading(), "released: no longer leading")
}

func TestElectionNeedsALeaseLocation(t *testing.T) {
	_, err := New(nil, Options{Enabled: true, Name: "svcguard", LeaseDuration: time.Second}, logr.Discard())
	assert.ErrorContains(t, err, "give --leader-election-namespace")
}
