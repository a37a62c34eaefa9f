package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type drainRecorder struct{ drained chan struct{} }

func (d drainRecorder) Drain() { close(d.drained) }

// TestShutdownSequenceDrainsWithoutLosingARequest walks the drain: readiness
// first, then answers that close their connections while idle pooled
// connections keep working, then a graceful close that lets an in-flight
// request finish with a live context.
func TestShutdownSequenceDrainsWithoutLosingARequest(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var cancelledWhileInFlight atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		cancelledWhileInFlight.Store(r.Context().Err() != nil)
		_, _ = io.WriteString(w, "slow")
	})
	mux.HandleFunc("/fast", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "fast") })

	l := newListener("127.0.0.1:0", nil, mux, logr.Discard())
	ln, err := l.Listen()
	require.NoError(t, err)
	addr := ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- l.Serve(ln) }()

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	call := func(path string) (resp *http.Response, reused bool, err error) {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, "http://"+addr+path, nil)
		resp, err = client.Do(req)
		if err == nil {
			_, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		return resp, reused, err
	}

	slow := make(chan error, 1)
	go func() { _, _, err := call("/slow"); slow <- err }()
	<-entered
	resp, _, err := call("/fast") // a second connection, idle in the pool afterwards
	require.NoError(t, err)
	assert.False(t, resp.Close, "before the drain, connections are kept alive")

	readiness := drainRecorder{drained: make(chan struct{})}
	sequence := make(chan error, 1)
	go func() {
		sequence <- shutdownSequence(readiness, l, 500*time.Millisecond, 10*time.Second, nil, logr.Discard())
	}()
	<-readiness.drained

	resp, reused, err := call("/fast")
	require.NoError(t, err, "during the drain the pooled idle connection still answers")
	assert.True(t, reused, "the idle keep-alive connection was not closed by the drain")
	assert.True(t, resp.Close, "during the drain every answer carries Connection: close")
	resp, reused, err = call("/fast")
	require.NoError(t, err, "a new connection during the drain is still accepted")
	assert.False(t, reused, "the connection that answered with Connection: close was retired")
	assert.True(t, resp.Close)

	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, 10*time.Second, 20*time.Millisecond, "after the drain the listener closes")
	select {
	case err := <-sequence:
		t.Fatalf("shutdown returned (%v) while a request was still in flight", err)
	default:
	}
	close(release)
	assert.NoError(t, <-slow, "the in-flight request got its answer")
	assert.False(t, cancelledWhileInFlight.Load(), "the in-flight request's context stayed alive until it was answered")
	assert.NoError(t, <-sequence, "shutdown finished cleanly")
	assert.NoError(t, <-served)
}

func TestShutdownSequenceGivesUpOnRequestsThatOutliveTheTimeout(t *testing.T) {
	entered := make(chan struct{})
	var cancelled atomic.Bool
	l := newListener("127.0.0.1:0", nil, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		cancelled.Store(true)
	}), logr.Discard())
	ln, err := l.Listen()
	require.NoError(t, err)
	go func() { _ = l.Serve(ln) }()
	go func() { _, _ = http.Post("http://"+ln.Addr().String(), "text/plain", nil) }()
	<-entered

	abort := make(chan struct{})
	close(abort) // skip the drain: only the timeout is under test
	err = shutdownSequence(drainRecorder{drained: make(chan struct{})}, l, time.Hour, 100*time.Millisecond, abort, logr.Discard())
	assert.ErrorContains(t, err, "did not finish within --shutdown-timeout")
	assert.Eventually(t, cancelled.Load, 5*time.Second, 10*time.Millisecond, "after the timeout the request's context is cancelled")
}
