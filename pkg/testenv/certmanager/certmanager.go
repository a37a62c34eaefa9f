// Package certmanager runs cert-manager's own controllers, from its Go
// module, in the test process against an envtest API server, so that tests
// prove a serving-certificate chain as cert-manager really builds it (keys,
// signatures, Secrets, caBundle merging on CA rotation) instead of trusting
// a hand-made stand-in. It is test support and knows nothing of svcguard.
//
// What runs, by cert-manager's own names: cainjector for
// MutatingWebhookConfigurations and ValidatingWebhookConfigurations (from
// Certificates and Secrets), and of the controller binary
// certificates-trigger, certificates-key-manager,
// certificates-request-manager, certificates-issuing,
// certificates-readiness, certificates-revision-manager,
// certificaterequests-approver, certificaterequests-issuer-selfsigned,
// certificaterequests-issuer-ca and issuers.
//
// What does not run: cert-manager's own admission webhook (no defaulting or
// validation of cert-manager objects beyond the CRD schemas), the ACME,
// Vault and Venafi issuers, ClusterIssuers, the ingress and Gateway shims,
// and the CertificateSigningRequest controllers.
package certmanager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	"github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"

	// The Issuer controller finds an issuer type's implementation in a
	// registry that these packages fill when they are initialised; without
	// them a CA or selfSigned Issuer never becomes Ready.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	"github.com/cert-manager/cert-manager/pkg/util"

	"github.com/svcguard/svcguard/pkg/testenv"
)

// Module is cert-manager's Go module path: its controllers run from this
// module and its CRDs come from this module's deploy/crds.
const Module = "github.com/cert-manager/cert-manager"

// controllers lists, by cert-manager's own names, the controllers of
// cert-manager's controller binary that Start runs: the whole issuing
// chain of a Certificate (trigger, key manager, request manager, issuing,
// readiness, revision manager), the approver (cert-manager refuses to sign a
// CertificateRequest nobody approved), the signers of the selfSigned and CA
// issuers, and the Issuer controller that makes Issuers Ready.
var controllers = []string{
	issuers.ControllerName,
	approver.ControllerName,
	crselfsigned.CRControllerName,
	crca.CRControllerName,
	trigger.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	issuing.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

// workers is how many items each controller handles at once. cert-manager
// runs 5; a test cluster holds a handful of objects, and the machines that
// run the tests have few cores to share.
const workers = 2

// syncTimeout bounds the wait for the controllers' caches at start: an
// envtest API server answers in milliseconds, so a longer wait means a
// missing CRD or permission, which should fail Start with a clear error.
const syncTimeout = 30 * time.Second

// Running is cert-manager running in this process.
type Running struct {
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutdown []func()

	mu   sync.Mutex
	errs []error
}

// Start installs cert-manager's CRDs (InstallCRDs) and runs, in this
// process, cainjector and cert-manager's controllers (the package doc names
// them) against the API server of cfg, whose user must be allowed everything cert-manager's
// controller and cainjector do (an envtest admin is). It returns once their
// caches are synced; they run until ctx ends or Stop is called. A logger in
// ctx (logr.NewContext) gets the logs of cert-manager's controllers and of
// cainjector's manager; without one they are discarded, so that a test's
// output is its own. (cainjector's reconcilers log to controller-runtime's
// global logger, and client-go to klog, whatever ctx holds.)
func Start(ctx context.Context, cfg *rest.Config) (*Running, error) {
	if err := InstallCRDs(cfg); err != nil {
		return nil, err
	}
	log := logr.FromContextOrDiscard(ctx)
	runCtx, cancel := context.WithCancel(logr.NewContext(ctx, log))
	r := &Running{ctx: runCtx, cancel: cancel}
	syncCtx, cancelSync := context.WithTimeout(runCtx, syncTimeout)
	defer cancelSync()
	err := r.startCAInjector(runCtx, syncCtx, cfg, log.WithName("cainjector"))
	if err == nil {
		err = r.startControllers(runCtx, syncCtx, cfg)
	}
	if err != nil {
		return nil, errors.Join(err, r.Stop())
	}
	return r, nil
}

// Stop stops every controller, waits until they have returned and reports
// the errors that stopped any of them before (an error that comes of
// stopping, such as caches that had no time to sync, is none).
func (r *Running) Stop() error {
	r.cancel()
	r.wg.Wait()
	for _, f := range r.shutdown {
		f()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(r.errs...)
}

// run runs f until it returns; an error it returns stops everything else
// too, since a half-running cert-manager would only make tests time out
// far from the cause.
func (r *Running) run(name string, f func() error) {
	r.wg.Go(func() {
		if err := f(); err != nil && r.ctx.Err() == nil {
			r.mu.Lock()
			r.errs = append(r.errs, fmt.Errorf("%s: %w", name, err))
			r.mu.Unlock()
			r.cancel()
		}
	})
}

// startCAInjector runs cainjector as its binary does (cmd/cainjector):
// a controller-runtime manager with Secrets left out of its cache, and
// RegisterAllInjectors. Only the webhook configurations are injected: the
// API server of a test has no APIServices or conversion webhooks to serve.
func (r *Running) startCAInjector(runCtx, syncCtx context.Context, cfg *rest.Config, log logr.Logger) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := cmapi.AddToScheme(scheme); err != nil {
		return err
	}
	// cainjector applies caBundle with server-side apply and names its
	// field manager after the user agent of the manager's config: without
	// one every apply is refused ("fieldManager: Required value: is
	// required for apply patch") and no caBundle is ever written.
	mgr, err := ctrl.NewManager(util.RestConfigWithUserAgent(cfg, "cainjector"), ctrl.Options{
		Scheme: scheme,
		Logger: log,
		Cache:  cache.Options{ReaderFailOnMissingInformer: true},
		Client: client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}},
		// No listeners: tests run side by side and the ports are not ours.
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// controller-runtime refuses a second controller of the same name in
		// one process, and a test process may start cainjector more than once.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return fmt.Errorf("building cainjector's manager: %w", err)
	}
	err = cainjector.RegisterAllInjectors(runCtx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor: map[string]bool{
			cainjector.MutatingWebhookConfigurationName:   true,
			cainjector.ValidatingWebhookConfigurationName: true,
		},
	})
	if err != nil {
		return fmt.Errorf("registering cainjector's injectors: %w", err)
	}
	r.run("cainjector", func() error { return mgr.Start(runCtx) })
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		return fmt.Errorf("cainjector's caches did not sync within %s", syncTimeout)
	}
	return nil
}

// startControllers runs the controllers as cert-manager's controller binary
// does (cmd/controller/app): a ContextFactory, each controller built by its
// registered constructor and run, then the shared informer factories
// started.
func (r *Running) startControllers(runCtx, syncCtx context.Context, cfg *rest.Config) error {
	factory, err := newContextFactory(runCtx, cfg)
	if err != nil {
		return err
	}
	known := controllerpkg.Known()
	for _, name := range controllers {
		construct, ok := known[name]
		if !ok {
			return fmt.Errorf("cert-manager has no controller %q registered", name)
		}
		c, err := construct(factory)
		if err != nil {
			return fmt.Errorf("building cert-manager's %s controller: %w", name, err)
		}
		r.run(name, func() error { return c.Run(workers, runCtx) })
	}
	// Build returns a Context that shares the factory's informer factories,
	// which now know every informer the controllers asked for.
	shared, err := factory.Build()
	if err != nil {
		return err
	}
	shared.SharedInformerFactory.Start(runCtx.Done())
	shared.KubeSharedInformerFactory.Start(runCtx.Done())
	r.shutdown = append(r.shutdown, shared.SharedInformerFactory.Shutdown, shared.KubeSharedInformerFactory.Shutdown)
	for what, synced := range shared.SharedInformerFactory.WaitForCacheSync(syncCtx.Done()) {
		if !synced {
			return fmt.Errorf("cert-manager's informer for %s did not sync within %s", what, syncTimeout)
		}
	}
	for what, synced := range shared.KubeSharedInformerFactory.WaitForCacheSync(syncCtx.Done()) {
		if !synced {
			return fmt.Errorf("cert-manager's informer for %s did not sync within %s", what, syncTimeout)
		}
	}
	return nil
}

// newContextFactory builds cert-manager's ContextFactory for cfg with the
// controller binary's defaults. cert-manager loads its client configuration
// only from a kubeconfig file, so cfg is written to one for as long as that
// takes.
func newContextFactory(ctx context.Context, cfg *rest.Config) (*controllerpkg.ContextFactory, error) {
	dir, err := os.MkdirTemp("", "certmanager-kubeconfig-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kubeconfigFor(cfg), kubeconfig); err != nil {
		return nil, fmt.Errorf("writing a kubeconfig for cert-manager: %w", err)
	}
	factory, err := controllerpkg.NewContextFactory(ctx, controllerpkg.ContextOptions{
		Kubeconfig: kubeconfig,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace: "kube-system",
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			CopiedAnnotationPrefixes: []string{"*", "-kubectl.kubernetes.io/", "-fluxcd.io/", "-argocd.argoproj.io/"},
			// cert-manager's defaults: a failed issuance is retried after an
			// hour, not at once, so a broken Certificate shows as failed
			// instead of spinning.
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("building cert-manager's controller context: %w", err)
	}
	return factory, nil
}

// kubeconfigFor returns a kubeconfig that reaches the API server of cfg as
// cfg's user, with every credential inline or by the same file path.
func kubeconfigFor(cfg *rest.Config) *clientcmdapi.Config {
	const name = "envtest"
	kc := clientcmdapi.NewConfig()
	kc.Clusters[name] = &clientcmdapi.Cluster{
		Server:                   cfg.Host + cfg.APIPath,
		TLSServerName:            cfg.ServerName,
		InsecureSkipTLSVerify:    cfg.Insecure,
		CertificateAuthority:     cfg.CAFile,
		CertificateAuthorityData: cfg.CAData,
	}
	kc.AuthInfos[name] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.CertFile,
		ClientCertificateData: cfg.CertData,
		ClientKey:             cfg.KeyFile,
		ClientKeyData:         cfg.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
		Username:              cfg.Username,
		Password:              cfg.Password,
		Impersonate:           cfg.Impersonate.UserName,
		ImpersonateUID:        cfg.Impersonate.UID,
		ImpersonateGroups:     cfg.Impersonate.Groups,
		ImpersonateUserExtra:  cfg.Impersonate.Extra,
	}
	kc.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	kc.CurrentContext = name
	return kc
}

// CRDDirectory returns the directory of cert-manager's CRDs in the module
// that svcguard's go.mod requires (deploy/crds in the module cache), so that
// tests install exactly the CRDs of the controllers they run, from the
// module of the project that owns them rather than from a copy.
func CRDDirectory() (string, error) {
	moduleDir, err := testenv.ModuleDir(".", Module)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(moduleDir, "deploy", "crds")
	if _, err := os.Stat(filepath.Join(dir, "cert-manager.io_certificates.yaml")); err != nil {
		return "", fmt.Errorf("no cert-manager CRDs in %s: %w", dir, err)
	}
	return dir, nil
}

// InstallCRDs creates or updates cert-manager's CRDs (from CRDDirectory) in
// the API server of cfg and waits until they are served. Start calls it, so
// that it works on any control plane, also one that knows nothing of
// cert-manager.
func InstallCRDs(cfg *rest.Config) error {
	dir, err := CRDDirectory()
	if err != nil {
		return err
	}
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{dir}, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("installing cert-manager's CRDs from %s: %w", dir, err)
	}
	return nil
}
