// Package loadgen sends AdmissionReviews to a webhook over TLS keep-alive
// connections, at a fixed rate or at saturation, and measures what each
// request took: the load generator of docs/performance.md.
//
// At a fixed rate it is open-loop: each request is due at its time on the
// schedule, and its latency counts from that time, so a server that stalls
// shows its stall in the percentiles instead of slowing the client down
// (no coordinated omission). A request that finds every connection busy
// waits, and that wait counts too.
package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Config says what to send and how.
type Config struct {
	// URL is the webhook's https URL.
	URL string
	// Body is the AdmissionReview to post.
	Body []byte
	// TLS is the client's TLS configuration (trusting the server's CA).
	TLS *tls.Config
	// Conns is the number of keep-alive connections (and, at saturation,
	// of requests in flight).
	Conns int
	// Rate is requests per second; 0 sends at saturation.
	Rate float64
	// Duration is how long to send.
	Duration time.Duration
}

// Result is what a run measured.
type Result struct {
	// Requests answered with HTTP 200, and Errors (anything else).
	Requests, Errors int
	// Elapsed is the run's wall time.
	Elapsed time.Duration
	// Latencies of the answered requests, sorted.
	Latencies []time.Duration
}

// Throughput is answered requests per second.
func (r Result) Throughput() float64 {
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Quantile returns the q-quantile (0.99: p99) of the latencies.
func (r Result) Quantile(q float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(q * float64(len(r.Latencies)-1))
	return r.Latencies[i]
}

// Run sends the load and returns what it measured.
func Run(ctx context.Context, c Config) (Result, error) {
	if c.Conns < 1 {
		return Result{}, fmt.Errorf("loadgen: Conns must be at least 1, not %d", c.Conns)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: c.TLS, MaxIdleConns: c.Conns, MaxIdleConnsPerHost: c.Conns, MaxConnsPerHost: c.Conns,
		ForceAttemptHTTP2: false,
	}}
	defer client.CloseIdleConnections()
	// Warm every connection (handshakes are not what is measured).
	var warm sync.WaitGroup
	for range c.Conns {
		warm.Go(func() { _, _ = post(ctx, client, c) })
	}
	warm.Wait()

	var mu sync.Mutex
	var res Result
	record := func(took time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			res.Errors++
			return
		}
		res.Requests++
		res.Latencies = append(res.Latencies, took)
	}
	start := time.Now()
	deadline := start.Add(c.Duration)
	var wg sync.WaitGroup
	if c.Rate <= 0 {
		for range c.Conns {
			wg.Go(func() {
				for time.Now().Before(deadline) && ctx.Err() == nil {
					t := time.Now()
					_, err := post(ctx, client, c)
					record(time.Since(t), err)
				}
			})
		}
	} else {
		interval := time.Duration(float64(time.Second) / c.Rate)
		slots := make(chan struct{}, c.Conns)
		for due := start; due.Before(deadline) && ctx.Err() == nil; due = due.Add(interval) {
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
			slots <- struct{}{} // waits while every connection is busy: that wait counts
			wg.Go(func() {
				defer func() { <-slots }()
				_, err := post(ctx, client, c)
				record(time.Since(due), err)
			})
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	slices.Sort(res.Latencies)
	return res, nil
}

func post(ctx context.Context, client *http.Client, c Config) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return int(n), fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return int(n), nil
}
