package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/svcguard/svcguard/pkg/options"
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
	// call reports whether the answer carried Connection: close and whether
	// it came over a reused connection.
	call := func(path string) (closed, reused bool, err error) {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, "http://"+addr+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			return false, reused, err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return resp.Close, reused, err
	}

	slow := make(chan error, 1)
	go func() { _, _, err := call("/slow"); slow <- err }()
	<-entered
	closed, _, err := call("/fast") // a second connection, idle in the pool afterwards
	require.NoError(t, err)
	assert.False(t, closed, "before the drain, connections are kept alive")

	readiness := drainRecorder{drained: make(chan struct{})}
	sequence := make(chan error, 1)
	go func() {
		sequence <- shutdownSequence(readiness, l, 500*time.Millisecond, 10*time.Second, nil, logr.Discard())
	}()
	<-readiness.drained

	closed, reused, err := call("/fast")
	require.NoError(t, err, "during the drain the pooled idle connection still answers")
	assert.True(t, reused, "the idle keep-alive connection was not closed by the drain")
	assert.True(t, closed, "during the drain every answer carries Connection: close")
	closed, reused, err = call("/fast")
	require.NoError(t, err, "a new connection during the drain is still accepted")
	assert.False(t, reused, "the connection that answered with Connection: close was retired")
	assert.True(t, closed)

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
	go func() {
		if resp, err := http.Post("http://"+ln.Addr().String(), "text/plain", nil); err == nil {
			resp.Body.Close()
		}
	}()
	<-entered

	abort := make(chan struct{})
	close(abort) // skip the drain: only the timeout is under test
	err = shutdownSequence(drainRecorder{drained: make(chan struct{})}, l, time.Hour, 100*time.Millisecond, abort, logr.Discard())
	assert.ErrorContains(t, err, "did not finish within --shutdown-timeout")
	assert.Eventually(t, cancelled.Load, 5*time.Second, 10*time.Millisecond, "after the timeout the request's context is cancelled")
}

// serveListener starts l on a loopback port and returns its address; the
// listener is shut down when the test ends.
func serveListener(t *testing.T, l *listener) string {
	t.Helper()
	ln, err := l.Listen()
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- l.Serve(ln) }()
	t.Cleanup(func() {
		_ = l.Shutdown(5 * time.Second)
		assert.NoError(t, <-served)
	})
	return ln.Addr().String()
}

// TestListenerTimeoutsOutlastTheAPIServer pins the reasoning behind each
// timeout: slow-loris headers are cut off early, while a request that takes
// as long as the API server may wait for it (timeoutSeconds: at most 30s) is
// neither cut off nor has its context cancelled, and idle connections are
// left for the client (client-go: 90s) to retire.
func TestListenerTimeoutsOutlastTheAPIServer(t *testing.T) {
	const apiServerMaxWebhookTimeout, clientGoIdleTimeout = 30 * time.Second, 90 * time.Second
	srv := newListener("127.0.0.1:0", nil, http.NotFoundHandler(), logr.Discard()).srv
	assert.LessOrEqual(t, srv.ReadHeaderTimeout, 10*time.Second, "headers arrive at once from the API server")
	assert.Positive(t, srv.ReadHeaderTimeout)
	assert.Greater(t, srv.ReadTimeout, apiServerMaxWebhookTimeout, "the read deadline lasts while the handler runs")
	assert.Greater(t, srv.WriteTimeout, apiServerMaxWebhookTimeout, "a request may take up to timeoutSeconds")
	assert.Greater(t, srv.IdleTimeout, clientGoIdleTimeout, "the client retires idle connections")
	assert.Equal(t, DefaultMaxInFlight, options.NewServer().MaxInFlightRequests, "--max-in-flight-requests defaults to the listener's default")
}

// TestListenerCutsOffSlowHeaders plays a slow-loris client: it trickles its
// headers, one byte at a time, slower than the read-header timeout allows
// in total. The listener closes the connection without calling the handler.
func TestListenerCutsOffSlowHeaders(t *testing.T) {
	var called atomic.Bool
	l := newListener("127.0.0.1:0", nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called.Store(true) }),
		logr.Discard(), withReadHeaderTimeout(200*time.Millisecond))
	addr := serveListener(t, l)

	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		// Never finishes the headers: one byte every 50ms, forever.
		head := []byte("POST /webhooks/service-host HTTP/1.1\r\nHost: svcguard\r\nContent-Type: application/json\r\nX-Slow: ")
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			b := byte('a')
			if i < len(head) {
				b = head[i]
			}
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
		}
	}()

	// Only a failure bound: without the timeout the read would block until it.
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
	got, err := io.ReadAll(conn) // until the listener closes the connection
	var netErr net.Error
	require.False(t, errors.As(err, &netErr) && netErr.Timeout(), "the listener never cut the slow client off")
	if len(got) > 0 {
		// Go's server answers a request line cut short by the deadline with a bare 400.
		assert.True(t, strings.HasPrefix(string(got), "HTTP/1.1 400 Bad Request\r\n"), "the slow client got: %q", got)
	}
	assert.False(t, called.Load(), "the handler never saw the request")
}

// TestListenerAnswers429BeyondTheInFlightCap fills the cap with one request
// blocked in the handler: the next one is answered 429 with Retry-After at
// once, and once the first is answered, requests are served again.
func TestListenerAnswers429BeyondTheInFlightCap(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	l := newListener("127.0.0.1:0", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		_, _ = io.WriteString(w, "answered")
	}), logr.Discard(), withMaxInFlight(1))
	addr := serveListener(t, l)
	client := &http.Client{Timeout: 10 * time.Second}
	type answer struct {
		status     int
		retryAfter string
		body       string
	}
	post := func() (answer, error) {
		resp, err := client.Post("http://"+addr+"/webhooks/service-host", "application/json", strings.NewReader(`{}`))
		if err != nil {
			return answer{}, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header.Get("Retry-After"), string(body)}, err
	}

	first := make(chan error, 1)
	go func() {
		a, err := post()
		if err == nil && (a.status != http.StatusOK || a.body != "answered") {
			err = fmt.Errorf("first request: HTTP %d %q", a.status, a.body)
		}
		first <- err
	}()
	<-entered

	a, err := post()
	require.NoError(t, err, "beyond the cap the request is answered, not left hanging")
	assert.Equal(t, http.StatusTooManyRequests, a.status)
	assert.Equal(t, "1", a.retryAfter)
	assert.Contains(t, a.body, "--max-in-flight-requests")
	assert.EqualValues(t, 1, calls.Load(), "the refused request never reached the handler")

	close(release)
	require.NoError(t, <-first, "the request inside the cap is answered")
	a, err = post()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, a.status, "below the cap again, requests are served: %s", a.body)
}

// TestListenerCapSparesTheSelfTestAndFreesSlotsFromSlowBodies: with the cap
// held by a client that trickles its body, readiness's self-test is still
// answered (a full cap must not make every replica unready), and the slow
// client loses its slot after the body-read timeout.
func TestListenerCapSparesTheSelfTestAndFreesSlotsFromSlowBodies(t *testing.T) {
	l := newListener("127.0.0.1:0", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "body not read: "+err.Error(), http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, "answered")
	}), logr.Discard(), withMaxInFlight(1), withBodyReadTimeout(300*time.Millisecond),
		withUncapped(func(r *http.Request) bool { return r.Header.Get("Self-Test") == "yes" }))
	addr := serveListener(t, l)

	slow, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer slow.Close()
	_, err = io.WriteString(slow, "POST /webhooks/service-host HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
	require.NoError(t, err)

	client := &http.Client{Timeout: 10 * time.Second}
	post := func(selfTest bool) int {
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/webhooks/service-host", strings.NewReader(`{}`))
		require.NoError(t, err)
		if selfTest {
			req.Header.Set("Self-Test", "yes")
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	require.Eventually(t, func() bool { return post(false) == http.StatusTooManyRequests }, 5*time.Second, 10*time.Millisecond,
		"the slow client holds the only slot")
	assert.Equal(t, http.StatusOK, post(true), "the self-test is answered whatever the cap")
	assert.Eventually(t, func() bool { return post(false) == http.StatusOK }, 10*time.Second, 50*time.Millisecond,
		"the slow client's slot is freed once its body misses the body-read timeout")
}

func TestListenerKeepsTheDefaultCapForANonPositiveOne(t *testing.T) {
	assert.Equal(t, DefaultMaxInFlight, newListener("127.0.0.1:0", nil, http.NotFoundHandler(), logr.Discard(), withMaxInFlight(0)).maxInFlight)
	assert.Equal(t, 7, cap(newListener("127.0.0.1:0", nil, http.NotFoundHandler(), logr.Discard(), withMaxInFlight(7)).inFlight))
}
