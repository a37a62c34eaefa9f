// Package server assembles svcguard's process: the TLS admission listener with
// a reloading serving certificate and a drain on shutdown, the policy-aware
// probes (package readiness), the metrics endpoint and the lifecycle, on top of
// a controller-runtime manager. It knows nothing about what the webhooks
// decide: cmd/svcguard registers them.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/component"
	"github.com/svcguard/svcguard/pkg/leader"
	"github.com/svcguard/svcguard/pkg/metrics"
	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/podwatch"
	"github.com/svcguard/svcguard/pkg/readiness"
	"github.com/svcguard/svcguard/pkg/review"
	"github.com/svcguard/svcguard/pkg/version"
)

// Names of the serving certificate files inside --cert-dir, as cert-manager
// and kubernetes.io/tls Secrets name them.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// Server is one svcguard replica: every registered webhook on one TLS
// listener, plus probes and metrics.
type Server struct {
	opts     *options.Server
	mgr      manager.Manager
	log      logr.Logger
	certs    *certwatcher.CertWatcher
	hooks    webhook.Server
	listener *listener
	configs  *readiness.Configurations
	elector  *leader.Elector
	deps     component.Dependencies
	webhooks []component.Webhook
	// notes are the webhooks' lines for /readyz?verbose (component.Built.Notes).
	notes []func() string
	// selfTest marks readiness's own requests to the webhooks.
	selfTest readiness.SelfTestMark
}

// New builds a server from opts. It fails, with an error naming the problem,
// when the serving certificate cannot be loaded or no API server is
// configured, so that a misconfigured replica exits at once instead of
// starting unable to serve.
func New(opts *options.Server) (*Server, error) {
	setLoggers(opts)
	logger := ctrl.Log.WithName("svcguard")

	if err := metrics.Register(crmetrics.Registry); err != nil {
		return nil, fmt.Errorf("cannot register svcguard's metrics: %w", err)
	}

	certs, err := certwatcher.New(filepath.Join(opts.CertDir, CertFile), filepath.Join(opts.CertDir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("cannot load the serving certificate from --cert-dir %s (it must hold %s and %s, a matching PEM certificate and key): %w",
			opts.CertDir, CertFile, KeyFile, err)
	}

	restConfig, err := loadRESTConfig(opts.Kubeconfig)
	if err != nil {
		return nil, err
	}
	clientset, err := kubernetes.NewForConfig(protobuf(restConfig))
	if err != nil {
		return nil, fmt.Errorf("cannot build a Kubernetes client: %w", err)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building the API scheme: %w", err)
	}

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:  scheme,
		Logger:  logger,
		Metrics: metricsOptions(opts, certs),
		// svcguard serves its own probes (policy-aware readiness) and its own
		// webhook listener (drained on shutdown), both below.
		HealthProbeBindAddress:  "0",
		PprofBindAddress:        opts.PprofBindAddress,
		GracefulShutdownTimeout: &opts.ShutdownTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot set up the server: %w", err)
	}
	// The watcher reloads tls.crt/tls.key when cert-manager rotates them.
	if err := mgr.Add(certs); err != nil {
		return nil, fmt.Errorf("cannot start the certificate watcher: %w", err)
	}
	configs := readiness.NewConfigurations(clientset, opts.MutatingWebhookConfiguration, opts.ValidatingWebhookConfiguration)
	if err := mgr.Add(configs); err != nil {
		return nil, fmt.Errorf("cannot watch the webhook configurations: %w", err)
	}
	own := options.OwnNamespace()
	leaseNamespace := opts.LeaderElectionNamespace
	if leaseNamespace == "" {
		leaseNamespace = own
	}
	elector, err := leader.New(clientset, leader.Options{
		Enabled:       opts.LeaderElect,
		Namespace:     leaseNamespace,
		Name:          opts.LeaderElectionID,
		LeaseDuration: opts.LeaderElectionLeaseDuration,
		RenewDeadline: opts.LeaderElectionRenewDeadline,
		RetryPeriod:   opts.LeaderElectionRetryPeriod,
	}, logger.WithName("leader"))
	if err != nil {
		return nil, err
	}
	if err := mgr.Add(elector); err != nil {
		return nil, fmt.Errorf("cannot start the leader election: %w", err)
	}
	// One watch of every Pod for every webhook that reads Pods; it starts
	// only if one registers a part.
	pods := podwatch.New(clientset)
	if err := mgr.Add(pods); err != nil {
		return nil, fmt.Errorf("cannot start the Pod watch: %w", err)
	}

	// A never-started controller-runtime webhook server is the registry of
	// handlers: Register wraps each in controller-runtime's webhook metrics
	// (controller_runtime_webhook_*), and its mux is served by the listener.
	mux := http.NewServeMux()
	hooks := webhook.NewServer(webhook.Options{WebhookMux: mux})
	selfTest := readiness.NewSelfTestMark()
	tlsConfig := &tls.Config{
		GetCertificate: certs.GetCertificate,
		// The API server talks HTTP/1.1 to webhooks; refusing HTTP/2 also
		// keeps the server clear of HTTP/2 rapid-reset attacks.
		NextProtos: []string{"http/1.1"},
		MinVersion: tls.VersionTLS12,
	}
	return &Server{
		opts:     opts,
		mgr:      mgr,
		log:      logger,
		certs:    certs,
		hooks:    hooks,
		listener: newListener(opts.WebhookBindAddress, tlsConfig, mux, logger.WithName("webhook-listener"), withMaxInFlight(opts.MaxInFlightRequests), withUncapped(selfTest.Signed)),
		configs:  configs,
		elector:  elector,
		selfTest: selfTest,
		deps: component.Dependencies{
			Decoder:       admission.NewDecoder(mgr.GetScheme()),
			Client:        clientset,
			Recorder:      mgr.GetEventRecorder("svcguard"),
			AuditInterval: opts.AuditInterval,
			OwnNamespace:  own,
			Start:         mgr.Add,
			Pods:          pods,
		},
	}, nil
}

// Add serves a webhook package's Built: its webhook on every replica, its
// audit on the leader.
func (s *Server) Add(b component.Built) {
	s.Register(b.Webhook)
	s.AddLeaderTask(b.Audit)
	for _, c := range b.Checks {
		s.AddLeaderTask(c)
	}
	s.notes = append(s.notes, b.Notes...)
}

// Register serves w on its path, wrapped with the common metrics, logging and
// panic recovery, and makes readiness aware of it.
func (s *Server) Register(w component.Webhook) {
	// review.Handler reads a well-formed review in one pass and leaves any
	// other request to controller-runtime's webhook, which decides both.
	s.hooks.Register(w.Path, review.Handler{Webhook: &webhook.Admission{
		Handler:         instrumented{name: w.Name, handler: w.Handler},
		WithContextFunc: s.selfTest.Context,
		// controller-runtime logs decoder errors, which quote what a client
		// sent; svcguard's logs never carry request content.
		LogConstructor: requestLogger,
	}})
	s.webhooks = append(s.webhooks, w)
	if w.Off {
		s.log.Info("webhook is off by its settings; it admits every request unchanged", "webhook", w.Name, "path", w.Path)
		return
	}
	s.log.Info("webhook registered", "webhook", w.Name, "path", w.Path)
}

// loggersSet makes the loggers process-wide once: they are globals, and a
// test process may build several servers.
var loggersSet sync.Once

func setLoggers(opts *options.Server) {
	loggersSet.Do(func() {
		ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts.Log)))
		// client-go (leader election, informers) logs through klog: same format.
		klog.SetLogger(ctrl.Log.WithName("client-go"))
	})
}

// AddLeaderTask runs task only on the replica that leads (every replica
// when --leader-elect is off), for work that must happen once per cluster.
// A nil task (an audit its settings turn off) is ignored.
func (s *Server) AddLeaderTask(task manager.Runnable) {
	if task != nil {
		s.elector.Add(task)
	}
}

// Leading tells whether this replica leads now.
func (s *Server) Leading() bool {
	return s.elector.Leading()
}

// Dependencies are what webhook packages build with (see package component).
func (s *Server) Dependencies() component.Dependencies {
	return s.deps
}

// Run serves until ctx is cancelled, then drains and shuts down (see
// shutdownSequence). It returns nil after a clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("starting", "version", version.String())
	webhookLn, err := s.listener.Listen()
	if err != nil {
		return err
	}
	probeLn, err := net.Listen("tcp", s.opts.HealthProbeBindAddress)
	if err != nil {
		_ = webhookLn.Close()
		return fmt.Errorf("cannot listen on --health-probe-bind-address %s: %w", s.opts.HealthProbeBindAddress, err)
	}
	monitor := s.readiness(webhookLn.Addr().String())
	for _, r := range []manager.Runnable{monitor, &probeServer{ln: probeLn, handler: monitor.Handler(), log: s.log.WithName("probes")}} {
		if err := s.mgr.Add(r); err != nil {
			_ = webhookLn.Close()
			_ = probeLn.Close()
			return fmt.Errorf("cannot start readiness: %w", err)
		}
	}

	// The manager (caches, certificate watcher, probes, metrics) runs on its
	// own context, cancelled only after the drain, so that everything the
	// webhooks need stays up while they answer.
	mgrCtx, stopMgr := context.WithCancel(context.Background())
	defer stopMgr()
	var mgrErr error
	mgrStopped := make(chan struct{})
	go func() {
		mgrErr = s.mgr.Start(mgrCtx)
		close(mgrStopped)
	}()
	served := make(chan error, 1)
	go func() { served <- s.listener.Serve(webhookLn) }()
	s.log.Info("serving webhooks", "address", webhookLn.Addr().String(), "probes", probeLn.Addr().String())

	select {
	case <-ctx.Done():
	case <-mgrStopped: // the machinery failed: shut down, the drain cut short
	case err := <-served:
		stopMgr()
		<-mgrStopped
		return fmt.Errorf("webhook listener stopped: %w", err)
	}
	// Audits need no drain: hand the Lease over first, so another replica
	// takes them over at once.
	s.elector.Release()
	shutdownErr := shutdownSequence(monitor, s.listener, s.opts.ShutdownDrain, s.opts.ShutdownTimeout, mgrStopped, s.log)
	if err := <-served; err != nil {
		return fmt.Errorf("webhook listener: %w", err)
	}
	stopMgr()
	<-mgrStopped
	if mgrErr != nil {
		return fmt.Errorf("server stopped: %w", mgrErr)
	}
	if shutdownErr != nil {
		return shutdownErr
	}
	s.log.Info("stopped cleanly")
	return nil
}

// readiness assembles the checks of the registered webhooks. servingAddr is
// the listener's bound address, which the self-test dials.
func (s *Server) readiness(servingAddr string) *readiness.Monitor {
	current := func() (*tls.Certificate, error) { return s.certs.GetCertificate(nil) }
	var all, cached []readiness.Webhook
	var synced []func() bool
	for _, w := range s.webhooks {
		rw := readiness.Webhook{Name: w.Name, Path: w.Path, SelfTest: w.SelfTest}
		all = append(all, rw)
		if w.CachesSynced != nil {
			cached = append(cached, rw)
			synced = append(synced, w.CachesSynced)
		}
	}
	checks := []readiness.Check{
		readiness.TLSCheck(current, all),
		readiness.ServingCheck(readiness.LoopbackAddress(servingAddr), current, s.selfTest, all),
		readiness.CABundleCheck(current, s.configs.Lookup, all),
	}
	if len(cached) > 0 {
		checks = append(checks, readiness.CachesCheck(func() bool {
			for _, ok := range synced {
				if !ok() {
					return false
				}
			}
			return true
		}, cached))
	}
	return readiness.NewMonitor(readiness.MonitorOptions{
		Interval:     s.opts.ReadinessCheckInterval,
		StartupGrace: s.opts.StartupGrace,
		Lookup:       s.configs.Lookup,
		Notes:        s.notes,
		Log:          s.log.WithName("readiness"),
	}, checks...)
}

// loadRESTConfig finds the API server: --kubeconfig, else $KUBECONFIG, else
// the in-cluster config, else ~/.kube/config (controller-runtime's order).
// Either way client-side rate limiting is off (QPS -1), as controller-runtime
// sets it for the paths it resolves: the API server's priority and fairness
// protects it, and svcguard's own calls are few and bounded (informers, at
// most 100 Events per audit pass, --remediation-rate evictions). Before, a
// --kubeconfig kept client-go's 5 requests a second while in-cluster had no
// limit, so local runs and tests were throttled and production was not.
func loadRESTConfig(kubeconfig string) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
			return nil, fmt.Errorf("cannot use --kubeconfig=%s: %w", kubeconfig, err)
		}
	} else if cfg, err = config.GetConfig(); err != nil {
		return nil, errors.New("no Kubernetes API server configured: $KUBECONFIG unset, not running in a cluster and no ~/.kube/config; give --kubeconfig")
	}
	cfg.QPS, cfg.Burst = -1, 0
	return cfg, nil
}

// protobuf is cfg speaking protobuf, for the typed clientset that carries
// the Pod watch and every other read of built-in objects: the API server
// encodes a Pod list or watch event in protobuf with less CPU and fewer
// bytes than JSON, and svcguard decodes it with less (docs/performance.md
// has the figures).
func protobuf(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.ContentType = runtime.ContentTypeProtobuf
	c.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return c
}

// metricsOptions serves /metrics over plain HTTP, or, with --metrics-secure,
// over HTTPS with the webhook's own certificate (reloaded by the same
// watcher) behind the API server's TokenReview and SubjectAccessReview, as
// kubebuilder projects do: metrics reveal which Services and Pods the audits
// found, so only scrapers bound to a ClusterRole granting get on /metrics
// may read them.
func metricsOptions(opts *options.Server, certs *certwatcher.CertWatcher) metricsserver.Options {
	o := metricsserver.Options{BindAddress: opts.MetricsBindAddress}
	if !opts.MetricsSecure {
		return o
	}
	o.SecureServing = true
	o.FilterProvider = filters.WithAuthenticationAndAuthorization
	o.TLSOpts = []func(*tls.Config){func(c *tls.Config) {
		c.GetCertificate = certs.GetCertificate
		// As on the webhook listener: no HTTP/2, so no rapid-reset exposure.
		c.NextProtos = []string{"http/1.1"}
		c.MinVersion = tls.VersionTLS12
	}}
	return o
}
