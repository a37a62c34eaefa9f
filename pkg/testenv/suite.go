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
	done, err := env.Serve(ctx, s.Register)
	if err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, "envtest suite cannot start svcguard:", err)
		return 1
	}
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "svcguard server:", err)
		return 1
	}
	return code
}

// ServerOptions returns server settings that serve on the environment's
// webhook address with its certificate, metrics off and probes on a free port.
func (e *Environment) ServerOptions() *options.Server {
	opts := options.NewServer()
	opts.WebhookBindAddress = e.WebhookBindAddress
	opts.CertDir = e.CertDir
	opts.Kubeconfig = e.Kubeconfig
	opts.MetricsBindAddress = "0"
	opts.HealthProbeBindAddress = "127.0.0.1:0"
	opts.Log = zap.Options{Development: true}
	return opts
}

// Serve runs a svcguard server in this process with the webhooks that
// register adds, until ctx ends; it returns once the listener serves. The
// channel yields the server's exit error.
func (e *Environment) Serve(ctx context.Context, register func(*server.Server) error) (<-chan error, error) {
	srv, err := server.New(e.ServerOptions())
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
	if err := e.WaitServing(waitCtx); err != nil {
		return nil, err
	}
	return done, nil
}
