package readiness

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
)

// switchable is a check whose result the test sets.
type switchable struct{ result Result }

func (s *switchable) check(name string, essential bool, webhooks ...Webhook) Check {
	return Check{Name: name, Essential: essential, Webhooks: webhooks, Run: func(context.Context) Result { return s.result }}
}

func get(t *testing.T, h http.Handler, target string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

func TestMonitorServesTheVerdictThroughItsLifecycle(t *testing.T) {
	tls, caches := &switchable{Pass("ok")}, &switchable{Fail(errors.New("not synced"))}
	guardHook := Webhook{Name: "node-port-guard", Path: "/webhooks/node-port-guard"}
	policy := underIgnore
	m := NewMonitor(MonitorOptions{
		Interval:     time.Hour,
		StartupGrace: time.Hour,
		Lookup:       func(string) Registration { return policy },
		Log:          logr.Discard(),
	}, tls.check("tls", true, guardHook), caches.check("caches", false, guardHook))
	h := m.Handler()
	m.started = time.Now()

	code, body := get(t, h, "/readyz")
	assert.Equal(t, http.StatusInternalServerError, code, "no round yet: %s", body)
	assert.Contains(t, body, "tls has not run yet")

	m.round(context.Background())
	code, body = get(t, h, "/readyz")
	assert.Equal(t, http.StatusInternalServerError, code, "starting, caches failing under Ignore still holds back: %s", body)
	assert.Contains(t, body, "starting: waiting for caches")

	caches.result = Pass("synced")
	m.round(context.Background())
	code, body = get(t, h, "/readyz")
	assert.Equal(t, http.StatusOK, code, "a whole round passed: %s", body)
	assert.Equal(t, "ok\n", body)

	caches.result = Fail(errors.New("not synced"))
	m.round(context.Background())
	code, body = get(t, h, "/readyz?verbose")
	assert.Equal(t, http.StatusOK, code, "after start-up, failing caches under Ignore degrade: %s", body)
	assert.Contains(t, body, "[-]caches failing: not synced; webhooks: node-port-guard (failurePolicy Ignore); node-port-guard degrades")
	assert.Contains(t, body, "readyz check passed (degraded: node-port-guard)")

	policy = underFail
	code, body = get(t, h, "/readyz")
	assert.Equal(t, http.StatusInternalServerError, code, "the live policy flipped to Fail: %s", body)
	assert.Contains(t, body, "node-port-guard runs under failurePolicy Fail")

	policy = underIgnore
	code, _ = get(t, h, "/readyz")
	assert.Equal(t, http.StatusOK, code, "and back to Ignore")

	m.Drain()
	code, body = get(t, h, "/readyz")
	assert.Equal(t, http.StatusInternalServerError, code, "draining: %s", body)
	assert.Contains(t, body, "shutting down")

	code, body = get(t, h, "/healthz")
	assert.Equal(t, http.StatusOK, code, "liveness ignores readiness: %s", body)
}

func TestMonitorStartupGraceEndsTheWaitForDependencies(t *testing.T) {
	caches := &switchable{Fail(errors.New("not synced"))}
	m := NewMonitor(MonitorOptions{StartupGrace: time.Minute, Lookup: func(string) Registration { return underIgnore }, Log: logr.Discard()},
		caches.check("caches", false, Webhook{Name: "node-port-guard", Path: "/p"}))
	m.started = time.Now().Add(-2 * time.Minute) // the grace ran out
	m.round(context.Background())
	v := m.Verdict()
	assert.True(t, v.Ready, "after the grace, caches failing under Ignore no longer hold readiness back: %v", v.Reasons)
	assert.Equal(t, []string{"node-port-guard"}, v.Degraded)
}

func TestLivenessFailsOnlyWhenRoundsStall(t *testing.T) {
	m := NewMonitor(MonitorOptions{Interval: time.Second, Log: logr.Discard()})
	assert.NoError(t, m.Live(), "not started yet")
	m.started = time.Now().Add(-time.Hour)
	m.lastRound = time.Now().Add(-time.Hour)
	assert.ErrorContains(t, m.Live(), "looks deadlocked")
	m.round(context.Background())
	assert.NoError(t, m.Live())
}
