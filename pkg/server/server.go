// Package server assembles svcguard's process: the TLS admission listener with
// a reloading serving certificate, the health probes, the metrics endpoint and
// the lifecycle, on top of a controller-runtime manager. It knows nothing about
// what the webhooks decide: cmd/svcguard registers them.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/version"
)

// Names of the serving certificate files inside --cert-dir, as cert-manager
// and kubernetes.io/tls Secrets name them.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// Webhook is one admission endpoint that svcguard serves.
type Webhook struct {
	// Name labels the webhook's metrics and log lines ("service-host").
	Name string
	// Path is the URL path the webhook configuration points at ("/webhooks/service-host").
	Path string
	// Handler decides each request.
	Handler admission.Handler
	// Off marks a webhook whose settings turn it off: its handler admits
	// everything unchanged, and the server says so at start.
	Off bool
}

// Server is one svcguard replica: every registered webhook on one TLS
// listener, plus probes and metrics.
type Server struct {
	mgr manager.Manager
	log logr.Logger
}

// New builds a server from opts. It fails, with an error naming the problem,
// when the serving certificate cannot be loaded or no API server is
// configured, so that a misconfigured replica exits at once instead of
// starting unable to serve.
func New(opts *options.Server) (*Server, error) {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.Log)))
	logger := ctrl.Log.WithName("svcguard")

	certs, err := certwatcher.New(filepath.Join(opts.CertDir, CertFile), filepath.Join(opts.CertDir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("cannot load the serving certificate from --cert-dir %s (it must hold %s and %s, a matching PEM certificate and key): %w",
			opts.CertDir, CertFile, KeyFile, err)
	}

	restConfig, err := loadRESTConfig(opts.Kubeconfig)
	if err != nil {
		return nil, err
	}

	host, port, err := options.SplitHostPort(opts.WebhookBindAddress)
	if err != nil {
		return nil, fmt.Errorf("--webhook-bind-address=%q: %w", opts.WebhookBindAddress, err)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the API scheme: %w", err)
	}

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 logger,
		Metrics:                metricsserver.Options{BindAddress: opts.MetricsBindAddress},
		HealthProbeBindAddress: opts.HealthProbeBindAddress,
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: host,
			Port: port,
			TLSOpts: []func(*tls.Config){func(c *tls.Config) {
				c.GetCertificate = certs.GetCertificate
				// The API server talks HTTP/1.1 to webhooks; refusing HTTP/2
				// also keeps the server clear of HTTP/2 rapid-reset attacks.
				c.NextProtos = []string{"http/1.1"}
				c.MinVersion = tls.VersionTLS12
			}},
		}),
	})
	if err != nil {
		return nil, fmt.Errorf("cannot set up the server: %w", err)
	}
	// The watcher reloads tls.crt/tls.key when cert-manager rotates them.
	if err := mgr.Add(certs); err != nil {
		return nil, fmt.Errorf("cannot start the certificate watcher: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	// Ready only once the TLS listener accepts handshakes.
	if err := mgr.AddReadyzCheck("webhook-serving", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return nil, err
	}
	return &Server{mgr: mgr, log: logger}, nil
}

// Register serves w on its path, wrapped with the common metrics, logging and
// panic recovery.
func (s *Server) Register(w Webhook) {
	s.mgr.GetWebhookServer().Register(w.Path, &webhook.Admission{Handler: instrumented{name: w.Name, handler: w.Handler}})
	if w.Off {
		s.log.Info("webhook is off by its settings; it admits every request unchanged", "webhook", w.Name, "path", w.Path)
		return
	}
	s.log.Info("webhook registered", "webhook", w.Name, "path", w.Path)
}

// Decoder decodes admission request objects with the server's API scheme.
func (s *Server) Decoder() admission.Decoder {
	return admission.NewDecoder(s.mgr.GetScheme())
}

// Manager gives webhooks the controller-runtime manager, for the informers
// and clients that their rules need.
func (s *Server) Manager() manager.Manager {
	return s.mgr
}

// Run serves until ctx is cancelled, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("starting", "version", version.String())
	if err := s.mgr.Start(ctx); err != nil {
		return fmt.Errorf("server stopped: %w", err)
	}
	s.log.Info("stopped cleanly")
	return nil
}

func loadRESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("cannot use --kubeconfig=%s: %w", kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := config.GetConfig()
	if err != nil {
		return nil, errors.New("no Kubernetes API server configured: not running in a cluster, $KUBECONFIG unset and no ~/.kube/config; give --kubeconfig")
	}
	return cfg, nil
}
