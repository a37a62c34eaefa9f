package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRunAtAFixedRateSendsTheScheduleAndCountsAnswers(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { served.Add(1) }))
	defer srv.Close()
	tlsConfig := srv.Client().Transport.(*http.Transport).TLSClientConfig
	res, err := Run(context.Background(), Config{URL: srv.URL, Body: []byte("{}"), TLS: tlsConfig, Conns: 2, Rate: 100, Duration: time.Second})
	require.NoError(t, err)
	assert.Equal(t, 0, res.Errors)
	assert.Equal(t, 100, res.Requests, "one request per 10 ms for a second")
	assert.Len(t, res.Latencies, res.Requests)
	assert.Equal(t, int64(102), served.Load(), "the schedule plus one warm-up request per connection")
	assert.LessOrEqual(t, res.Quantile(0.5), res.Quantile(0.99))
}

func TestRunCountsRefusalsAsErrors(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTooManyRequests) }))
	defer srv.Close()
	tlsConfig := srv.Client().Transport.(*http.Transport).TLSClientConfig
	res, err := Run(context.Background(), Config{URL: srv.URL, Body: []byte("{}"), TLS: tlsConfig, Conns: 1, Duration: 200 * time.Millisecond})
	require.NoError(t, err)
	assert.Zero(t, res.Requests)
	assert.Positive(t, res.Errors, "at saturation every refused request is an error")
	assert.Zero(t, res.Quantile(0.99), "no latency without an answer")
}

func TestRunRefusesNoConnections(t *testing.T) {
	_, err := Run(context.Background(), Config{Conns: 0})
	assert.ErrorContains(t, err, "Conns must be at least 1")
}
