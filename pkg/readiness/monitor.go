package readiness

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/svcguard/svcguard/pkg/metrics"
)

// MonitorOptions configure a Monitor.
type MonitorOptions struct {
	// Interval between rounds of checks; each round runs every check once,
	// so the self-test costs one request per webhook per interval, not one
	// per probe.
	Interval time.Duration
	// StartupGrace bounds how long a fresh replica waits for a whole round
	// to pass. After it, a failing dependency of a webhook under Ignore no
	// longer holds readiness back, so that broken caches cannot keep
	// every replica (and the webhooks that do not need them) out of service.
	StartupGrace time.Duration
	// Lookup returns a webhook path's live registration.
	Lookup func(path string) Registration
	// Notes are lines that /readyz?verbose shows after the checks; they
	// never affect readiness.
	Notes []func() string
	// Log receives readiness changes.
	Log logr.Logger
}

// Monitor runs the checks in rounds, keeps their latest results and serves
// the verdict on /readyz. It is a controller-runtime Runnable that every
// replica runs.
type Monitor struct {
	opts   MonitorOptions
	checks []Check

	mu         sync.Mutex
	results    []Result
	started    time.Time
	lastRound  time.Time
	passedOnce bool
	draining   bool
	wasReady   bool
}

// NewMonitor returns a monitor of checks.
func NewMonitor(opts MonitorOptions, checks ...Check) *Monitor {
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Lookup == nil {
		opts.Lookup = func(string) Registration {
			return Registration{Known: true, Note: "no webhook configurations consulted"}
		}
	}
	m := &Monitor{opts: opts, checks: checks, results: make([]Result, len(checks))}
	for i, c := range checks {
		m.results[i] = Result{State: Pending}
		metrics.ReadinessCheck.WithLabelValues(c.Name).Set(0)
	}
	metrics.Ready.Set(0)
	return m
}

// Start runs a round of checks at once and then every interval, until ctx
// ends.
func (m *Monitor) Start(ctx context.Context) error {
	m.mu.Lock()
	m.started = time.Now()
	m.mu.Unlock()
	ticker := time.NewTicker(m.opts.Interval)
	defer ticker.Stop()
	for {
		m.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// NeedLeaderElection tells controller-runtime that every replica checks itself.
func (m *Monitor) NeedLeaderElection() bool { return false }

func (m *Monitor) round(ctx context.Context) {
	results := make([]Result, len(m.checks))
	for i, c := range m.checks {
		checkCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		results[i] = c.Run(checkCtx)
		cancel()
	}

	m.mu.Lock()
	for i, c := range m.checks {
		if prev := m.results[i]; prev.State != results[i].State {
			m.opts.Log.Info("readiness check changed", "check", c.Name, "from", prev.State, "to", results[i].State, "reason", results[i].Reason)
		}
		ok := results[i].State == Passing || results[i].State == Skipped
		metrics.ReadinessCheck.WithLabelValues(c.Name).Set(boolValue(ok))
	}
	m.results = results
	m.lastRound = time.Now()
	if !m.passedOnce && Decide(m.inputLocked(true)).Ready {
		m.passedOnce = true
	}
	m.mu.Unlock()
	m.Verdict() // logs and exports a change at once
}

// Verdict decides readiness from the latest results and the live policies.
func (m *Monitor) Verdict() Verdict {
	m.mu.Lock()
	defer m.mu.Unlock()
	starting := !m.passedOnce && (m.started.IsZero() || time.Since(m.started) < m.opts.StartupGrace)
	v := Decide(m.inputLocked(starting))
	for _, note := range m.opts.Notes {
		v.Notes = append(v.Notes, note())
	}
	if v.Ready != m.wasReady {
		m.wasReady = v.Ready
		if v.Ready {
			m.opts.Log.Info("ready: serving admission requests", "degraded", v.Degraded)
		} else {
			m.opts.Log.Info("not ready", "reasons", v.Reasons)
		}
	}
	metrics.Ready.Set(boolValue(v.Ready))
	return v
}

func (m *Monitor) inputLocked(starting bool) Input {
	in := Input{Starting: starting, Draining: m.draining}
	for i, c := range m.checks {
		cs := CheckState{Name: c.Name, Essential: c.Essential, Result: m.results[i]}
		for _, w := range c.Webhooks {
			cs.Webhooks = append(cs.Webhooks, WebhookRegistration{Name: w.Name, Registration: m.opts.Lookup(w.Path)})
		}
		in.Checks = append(in.Checks, cs)
	}
	return in
}

// Drain makes /readyz fail from now on: shutdown began.
func (m *Monitor) Drain() {
	m.mu.Lock()
	m.draining = true
	m.mu.Unlock()
	m.Verdict()
}

// Live is the liveness check: it fails only when the rounds of checks have
// stalled (every check is bounded by a timeout, so a stall is a deadlock),
// never because of the cluster's state.
func (m *Monitor) Live() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	stall := max(time.Minute, 10*m.opts.Interval)
	last := m.lastRound
	if last.IsZero() {
		last = m.started
	}
	if !last.IsZero() && time.Since(last) > stall {
		return fmt.Errorf("readiness checks have not completed a round since %s: the process looks deadlocked", last.UTC().Format(time.RFC3339))
	}
	return nil
}

// Handler serves /healthz (liveness) and /readyz (the verdict; add ?verbose
// for every check, the webhooks it affects and their live failure policies).
func (m *Monitor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := m.Live(); err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, "healthz check failed: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		v := m.Verdict()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !v.Ready {
			w.WriteHeader(http.StatusInternalServerError)
		}
		switch _, verbose := r.URL.Query()["verbose"]; {
		case verbose:
			fmt.Fprint(w, v.Render())
		case v.Ready:
			fmt.Fprintln(w, "ok")
		default:
			fmt.Fprintf(w, "readyz check failed: %s\n", strings.Join(v.Reasons, "; "))
		}
	})
	return mux
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
