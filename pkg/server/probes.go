package server

import (
	"context"
	"errors"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// probeServer serves /healthz and /readyz over plain HTTP. It is a manager
// Runnable, so that it keeps answering (not ready) during the drain and stops
// with the rest of the machinery afterwards.
type probeServer struct {
	ln      net.Listener
	handler http.Handler
	log     logr.Logger
}

// Start serves until ctx ends.
func (p *probeServer) Start(ctx context.Context) error {
	srv := &http.Server{Handler: p.handler, ReadHeaderTimeout: 10 * time.Second, ErrorLog: httpErrorLog(p.log)}
	go func() {
		<-ctx.Done()
		// ctx is done by now: shutting down needs a deadline of its own.
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	if err := srv.Serve(p.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// NeedLeaderElection tells controller-runtime that every replica serves probes.
func (p *probeServer) NeedLeaderElection() bool { return false }

// httpErrorLog sends net/http's own errors (TLS handshakes that port scanners
// abandon, malformed requests) to the structured log at debug level.
func httpErrorLog(log logr.Logger) *stdlog.Logger {
	return stdlog.New(logWriter{log}, "", 0)
}

type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info(strings.TrimSpace(string(p)))
	return len(p), nil
}
