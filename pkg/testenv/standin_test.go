package testenv

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// replicaStub is a backend that names itself in every answer and whose
// /readyz answers 200 while ready is true.
type replicaStub struct {
	name  string
	ready atomic.Bool
	srv   *httptest.Server
}

func newReplicaStub(t *testing.T, name string) *replicaStub {
	r := &replicaStub{name: name}
	r.ready.Store(true)
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/readyz" && !r.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, r.name)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *replicaStub) addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

var stubProbe = Probe{Path: "/readyz", Period: 20 * time.Millisecond, FailureThreshold: 1}

func newStandIn(t *testing.T, lag time.Duration, replicas ...*replicaStub) *ServiceStandIn {
	s, err := NewServiceStandIn("127.0.0.1:0", stubProbe, lag)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	for _, r := range replicas {
		s.Add(r.name, r.addr(), r.srv.URL)
	}
	return s
}

// ask sends one request on conn (nil: a new connection) and returns the
// answering replica's name and the connection.
func ask(t *testing.T, s *ServiceStandIn, conn net.Conn) (string, net.Conn, error) {
	t.Helper()
	if conn == nil {
		var err error
		if conn, err = net.Dial("tcp", s.Addr); err != nil {
			return "", nil, err
		}
		t.Cleanup(func() { _ = conn.Close() })
	}
	if _, err := fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return "", conn, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", conn, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), conn, err
}

func TestServiceStandInRoutesNewConnectionsOnlyToReadyEndpoints(t *testing.T) {
	a, b := newReplicaStub(t, "a"), newReplicaStub(t, "b")
	b.ready.Store(false)
	s := newStandIn(t, 0, a, b)
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual([]string{"a"}, s.Ready()) }, 5*time.Second, 10*time.Millisecond)
	for range 20 {
		name, _, err := ask(t, s, nil)
		require.NoError(t, err)
		assert.Equal(t, "a", name, "b is not ready: no new connection may reach it")
	}
	b.ready.Store(true)
	require.Eventually(t, func() bool { return len(s.Ready()) == 2 }, 5*time.Second, 10*time.Millisecond, "b ready again")
	seen := map[string]bool{}
	for range 40 {
		name, _, err := ask(t, s, nil)
		require.NoError(t, err)
		seen[name] = true
	}
	assert.Equal(t, map[string]bool{"a": true, "b": true}, seen, "new connections spread over both ready endpoints")
}

func TestServiceStandInKeepsAnEstablishedConnectionOnAnEndpointThatLeft(t *testing.T) {
	a := newReplicaStub(t, "a")
	s := newStandIn(t, 0, a)
	require.Eventually(t, func() bool { return len(s.Ready()) == 1 }, 5*time.Second, 10*time.Millisecond)
	name, conn, err := ask(t, s, nil)
	require.NoError(t, err)
	require.Equal(t, "a", name)

	a.ready.Store(false)
	require.Eventually(t, func() bool { return len(s.Ready()) == 0 }, 5*time.Second, 10*time.Millisecond, "a left the endpoints")
	name, _, err = ask(t, s, conn)
	require.NoError(t, err, "the established connection must still reach a, as conntrack keeps it")
	assert.Equal(t, "a", name)

	_, _, err = ask(t, s, nil)
	assert.Error(t, err, "a new connection with no ready endpoint must be closed at once")
	assert.Equal(t, 1, s.Stats().NoEndpoint)
}

func TestServiceStandInAppliesReadinessChangesAfterTheEndpointLag(t *testing.T) {
	a := newReplicaStub(t, "a")
	const lag = 300 * time.Millisecond
	s := newStandIn(t, lag, a)
	probed := time.Now()
	require.Eventually(t, func() bool { return len(s.Ready()) == 1 }, 5*time.Second, 5*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(probed), lag, "a passing probe reaches the routing only after the lag")
}

func TestServiceStandInCountsAnEndpointThatDoesNotAccept(t *testing.T) {
	a := newReplicaStub(t, "a")
	s := newStandIn(t, time.Hour, a) // the routing never learns that a went away
	s.mu.Lock()
	s.endpoints["a"].routed = true
	s.mu.Unlock()
	a.srv.Close()
	_, _, err := ask(t, s, nil)
	assert.Error(t, err, "a dead endpoint still routed must fail the connection")
	assert.Equal(t, 1, s.Stats().Refused)
}

func TestServiceStandInRoutesToADeletedEndpointUntilTheLagPassed(t *testing.T) {
	a, b := newReplicaStub(t, "a"), newReplicaStub(t, "b")
	const lag = 500 * time.Millisecond
	s := newStandIn(t, lag, a, b)
	require.Eventually(t, func() bool { return len(s.Ready()) == 2 }, 5*time.Second, 10*time.Millisecond)
	s.Delete("a")
	assert.Equal(t, []string{"a", "b"}, s.Ready(), "the routing learns of a deleted Pod only after the lag")
	require.Eventually(t, func() bool { return assert.ObjectsAreEqual([]string{"b"}, s.Ready()) }, 5*time.Second, 10*time.Millisecond,
		"the deleted endpoint leaves the routing after the lag")
}
