package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/svcguard/svcguard/pkg/metrics"
)

// Timeouts of the webhook listener. The only legitimate client is the API
// server, which sends a request's headers and body at once and waits at most
// its webhook timeout (timeoutSeconds, 30s at most) for the answer.
const (
	// DefaultReadHeaderTimeout bounds the TLS handshake and the request
	// headers: the API server sends them at once, so a client that takes
	// longer is a slow-loris holding a connection and a goroutine.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultReadTimeout bounds the whole request, body included (a body
	// trickled to hold the connection); it must outlast the longest
	// legitimate request, 30s plus margin, because Go keeps it as the
	// connection's read deadline while the handler runs and cancels the
	// request's context when it passes.
	DefaultReadTimeout = 40 * time.Second
	// DefaultWriteTimeout bounds handling plus writing the answer; it must
	// exceed the API server's largest webhook timeout (30s) plus margin, or a
	// slow but legitimate answer would be cut off, including during the drain.
	DefaultWriteTimeout = 40 * time.Second
	// DefaultIdleTimeout is longer than the API server's idle timeout for
	// webhook connections (client-go's 90s), so that the client, not the
	// server, retires an idle connection: a server-side close races with the
	// client reusing it.
	DefaultIdleTimeout = 120 * time.Second
	// BodyReadTimeout bounds how long a request that holds a slot of the
	// in-flight cap may take to send its body. It stays the connection's read
	// deadline while the handler runs, so it also bounds the answer, far above
	// what a decision takes (microseconds) and above the manifests' 2s
	// timeoutSeconds, after which the API server has given up anyway.
	BodyReadTimeout = 10 * time.Second
	// DefaultMaxInFlight is the default of --max-in-flight-requests: each
	// request may carry a body of up to 7 MiB (controller-runtime's limit, as
	// an UPDATE holds two objects) and costs several times that to decode,
	// so the cap bounds memory too (the manifests set 16 with GOMEMLIMIT under
	// a 512Mi limit: BenchmarkHostileReviewsPeakRSS); at about a millisecond
	// per request 32 still answer tens of thousands of requests a second.
	DefaultMaxInFlight = 32
)

// listener is the webhook listener: an HTTP server that owns its request
// contexts and its shutdown, so that SIGTERM can drain it instead of
// cancelling what it is answering.
//
// controller-runtime's webhook server derives every request's context from
// the manager's, which a signal cancels at once; and its shutdown closes
// idle keep-alive connections that the API server may be reusing that very
// moment. Neither is acceptable for a webhook that must never lose a request.
type listener struct {
	addr     string
	srv      *http.Server
	draining atomic.Bool
	// cancelRequests ends the contexts of admission requests; it is called
	// only after shutdown finished or timed out.
	cancelRequests context.CancelFunc

	// readHeaderTimeout is srv.ReadHeaderTimeout (see DefaultReadHeaderTimeout).
	readHeaderTimeout time.Duration
	// maxInFlight caps the requests being answered at once (see limitInFlight).
	maxInFlight int
	// inFlight holds one token per request being answered.
	inFlight chan struct{}
	// uncapped tells the requests the cap never refuses (readiness's
	// self-test: a full cap must not make every replica unready at once).
	uncapped        func(*http.Request) bool
	bodyReadTimeout time.Duration
	log             logr.Logger
}

// listenerOption changes a listener's setting from its default.
type listenerOption func(*listener)

// withMaxInFlight sets the cap on requests answered at once
// (--max-in-flight-requests); n < 1 keeps the default.
func withMaxInFlight(n int) listenerOption {
	return func(l *listener) {
		if n >= 1 {
			l.maxInFlight = n
		}
	}
}

// withUncapped exempts the requests exempt reports from the in-flight cap.
func withUncapped(exempt func(*http.Request) bool) listenerOption {
	return func(l *listener) { l.uncapped = exempt }
}

// withBodyReadTimeout sets BodyReadTimeout (tests use a short one).
func withBodyReadTimeout(d time.Duration) listenerOption {
	return func(l *listener) { l.bodyReadTimeout = d }
}

// withReadHeaderTimeout sets the read-header timeout (tests use a short one).
func withReadHeaderTimeout(d time.Duration) listenerOption {
	return func(l *listener) { l.readHeaderTimeout = d }
}

func newListener(addr string, tlsConfig *tls.Config, handler http.Handler, log logr.Logger, opts ...listenerOption) *listener {
	requests, cancel := context.WithCancel(context.Background())
	l := &listener{addr: addr, cancelRequests: cancel, readHeaderTimeout: DefaultReadHeaderTimeout, maxInFlight: DefaultMaxInFlight, bodyReadTimeout: BodyReadTimeout, log: log}
	for _, o := range opts {
		o(l)
	}
	l.inFlight = make(chan struct{}, l.maxInFlight)
	l.srv = &http.Server{
		Handler:           l.closeWhileDraining(l.limitInFlight(handler)),
		TLSConfig:         tlsConfig,
		BaseContext:       func(net.Listener) context.Context { return requests },
		MaxHeaderBytes:    1 << 20,
		ReadHeaderTimeout: l.readHeaderTimeout,
		ReadTimeout:       DefaultReadTimeout,
		WriteTimeout:      DefaultWriteTimeout,
		IdleTimeout:       DefaultIdleTimeout,
		ErrorLog:          httpErrorLog(log),
	}
	return l
}

// limitInFlight answers HTTP 429 with Retry-After at once, without reading
// the body, when maxInFlight requests are already being answered.
//
// At once rather than after a wait: the API server calls webhooks through
// client-go, which retries a 429 that carries Retry-After after that many
// seconds while the webhook's timeoutSeconds allows (Retry-After: 1 leaves
// room for a second try within the manifests' 2s), so a refusal costs it
// little; a queue here would instead spend that budget while the overload
// lasts and only move the hang into svcguard. Every path of this listener is
// a webhook (probes and metrics have their own listeners), so the cap covers
// exactly the admission requests.
func (l *listener) limitInFlight(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.uncapped != nil && l.uncapped(r) {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case l.inFlight <- struct{}{}:
			defer func() { <-l.inFlight }()
			// The API server sends a body at once: a client that trickles it
			// holds a slot for BodyReadTimeout at most, not the 40s ReadTimeout.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(l.bodyReadTimeout))
			next.ServeHTTP(w, r)
		default:
			metrics.AdmissionThrottled.Inc()
			l.log.V(1).Info("too many admission requests in flight; answered 429", "limit", l.maxInFlight)
			w.Header().Set("Retry-After", "1")
			http.Error(w, fmt.Sprintf("svcguard: %d admission requests already in flight (--max-in-flight-requests); retry", l.maxInFlight),
				http.StatusTooManyRequests)
		}
	})
}

// closeWhileDraining adds "Connection: close" to every answer once the drain
// began: Go's server then closes that connection right after the answer, so
// the API server retires each pooled connection cleanly, one answered request
// at a time, and dials a replica that is still in the endpoints.
func (l *listener) closeWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if l.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// Listen binds the address, so that a taken port fails the start at once.
func (l *listener) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on --webhook-bind-address %s: %w", l.addr, err)
	}
	if l.srv.TLSConfig != nil {
		ln = tls.NewListener(ln, l.srv.TLSConfig)
	}
	return ln, nil
}

// Serve answers on ln until Shutdown.
func (l *listener) Serve(ln net.Listener) error {
	if err := l.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Drain starts closing each connection after its next answer. Idle
// connections are left alone: closing them would race with the API server
// reusing them, and client-go does not retry a POST that met a closed
// connection.
func (l *listener) Drain() {
	l.draining.Store(true)
}

// Shutdown closes the listener, waits up to timeout for in-flight requests to
// finish, and only then cancels the requests' contexts.
func (l *listener) Shutdown(timeout time.Duration) error {
	defer l.cancelRequests()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		_ = l.srv.Close()
		return fmt.Errorf("in-flight admission requests did not finish within --shutdown-timeout %s: %w", timeout, err)
	}
	return nil
}

// drainer is the part of readiness that shutdown tells first.
type drainer interface {
	// Drain makes /readyz fail from now on.
	Drain()
}

// shutdownSequence is what svcguard does between SIGTERM and exit, in order:
//  1. /readyz fails, so the endpoints controller removes the replica and new
//     connections go elsewhere;
//  2. for drain, the listener keeps answering, every answer closing its
//     connection, while the API server's pooled connections still arrive;
//  3. the listener closes and in-flight requests finish, within timeout.
//
// abort ends step 2 early (the manager failed: nothing would judge requests).
func shutdownSequence(readiness drainer, l *listener, drain, timeout time.Duration, abort <-chan struct{}, log logr.Logger) error {
	log.Info("shutting down: /readyz fails; the webhook listener keeps answering, closing each connection after its answer",
		"drain", drain.String())
	readiness.Drain()
	l.Drain()
	timer := time.NewTimer(drain)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-abort:
		log.Info("drain cut short: the server's machinery stopped")
	}
	log.Info("drain over: closing the webhook listener and finishing in-flight requests", "timeout", timeout.String())
	return l.Shutdown(timeout)
}
