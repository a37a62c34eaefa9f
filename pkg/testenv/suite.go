package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/server"
)

// Suite is one package's envtest suite: a control plane and an in-process
// svcguard server shared by the package's tests.
type Suite struct {
	// Options say what to register in the API server.
	Options Options
	// Register adds the webhooks under test to the server.
	Register func(*server.Server) error
	// Env is the running environment while the tests run.
	Env *Environment
	// ProbeURL is the base URL of the in-process server's /healthz and
	// /readyz ("http://127.0.0.1:PORT").
	ProbeURL string
}

// Main is the package's TestMain: it starts the environment and the server,
// runs the tests, stops everything and exits with the tests' code.
func (s *Suite) Main(m *testing.M) {
	os.Exit(s.run(m))
}

func (s *Suite) run(m *testing.M) int {
	env, err := Start(s.Options)
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest suite cannot start:", err)
		return 1
	}
	s.Env = env
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	opts, err := env.ServerOptions()
	if err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, "envtest suite cannot pick addresses:", err)
		return 1
	}
	s.ProbeURL = "http://" + opts.HealthProbeBindAddress
	done, err := env.Serve(ctx, opts, s.Register)
	if err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, "envtest suite cannot start svcguard:", err)
		return 1
	}
	code := m.Run()
	if err := env.CheckAdmissionEvaluation(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "svcguard server:", err)
		return 1
	}
	return code
}

// ServerOptions returns server settings that serve on the environment's
// webhook address with its certificate, metrics off, probes on a free port,
// readiness rounds every 200ms and no shutdown drain (nothing routes to a
// test server through a Service). It returns an error, as Serve does,
// because Suite.Main (the TestMain) calls it.
func (e *Environment) ServerOptions() (*options.Server, error) {
	probes, err := FreeAddress()
	if err != nil {
		return nil, err
	}
	opts := options.NewServer()
	opts.WebhookBindAddress = e.WebhookBindAddress
	opts.CertDir = e.CertDir
	opts.Kubeconfig = e.Kubeconfig
	opts.MetricsBindAddress = "0"
	opts.HealthProbeBindAddress = probes
	opts.ReadinessCheckInterval = 200 * time.Millisecond
	opts.ShutdownDrain = 0
	opts.Log = zap.Options{Development: true}
	return opts, nil
}

// Serve runs a svcguard server with opts (from ServerOptions) in this process
// with the webhooks that register adds, until ctx ends; it returns once the
// server reports ready. The channel yields the server's exit error. It
// returns errors rather than failing a test: Suite.Main (the TestMain) calls
// it.
func (e *Environment) Serve(ctx context.Context, opts *options.Server, register func(*server.Server) error) (<-chan error, error) {
	srv, err := server.New(opts)
	if err != nil {
		return nil, err
	}
	if err := register(srv); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := e.waitServing(waitCtx); err != nil {
		return nil, err
	}
	if err := waitReady(waitCtx, "http://"+opts.HealthProbeBindAddress, done); err != nil {
		return nil, err
	}
	return done, nil
}
