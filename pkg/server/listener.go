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
}

func newListener(addr string, tlsConfig *tls.Config, handler http.Handler, log logr.Logger) *listener {
	requests, cancel := context.WithCancel(context.Background())
	l := &listener{addr: addr, cancelRequests: cancel}
	l.srv = &http.Server{
		Handler:           l.closeWhileDraining(handler),
		TLSConfig:         tlsConfig,
		BaseContext:       func(net.Listener) context.Context { return requests },
		MaxHeaderBytes:    1 << 20,
		ReadHeaderTimeout: 32 * time.Second,
		// Longer than the API server's idle timeout for webhook connections
		// (client-go's 90s), so that the client, not the server, retires an
		// idle connection: a server-side close races with the client reusing it.
		IdleTimeout: 120 * time.Second,
		ErrorLog:    httpErrorLog(log),
	}
	return l
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
