// Package testenv is the shared harness of svcguard's envtest suites: a real
// kube-apiserver and etcd (built from Go modules by `make envtest`), svcguard's
// webhook configurations, rendered from manifests/overlays/default as the
// install applies them, registered against it with a throwaway CA, and an
// in-process svcguard server serving them over real TLS.
// The demo (hack/demo) and the end-to-end suite start their control plane
// through it too, so there is one way to stand up a cluster here. It also
// renders the shipped manifests with the kustomize Go API (Rendered, Shipped),
// for unit tests too: rendering starts nothing.
//
// Helpers that tests call take a testing.TB and fail the test. The few that
// return an error instead say why in their doc: the demo or a TestMain calls
// them (no test to fail), or tests poll them inside require.Eventually,
// where failing the test is not allowed.
package testenv

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Environment is a running control plane with svcguard's webhook
// configurations registered, pointing at WebhookBindAddress.
type Environment struct {
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Client is a controller-runtime client on Config.
	Client client.Client
	// Kubeconfig is the path of a kubeconfig file for Config, for processes
	// and for people (the demo prints it).
	Kubeconfig string
	// WebhookBindAddress is host:port where the API server sends admission
	// requests: svcguard must serve there.
	WebhookBindAddress string
	// CertDir holds tls.crt and tls.key, signed by the CA that the registered
	// configurations carry as caBundle.
	CertDir string
	// CAData is that CA's PEM certificate.
	CAData []byte

	env *envtest.Environment
	dir string
	// restarted are kube-apiserver processes started by RestartAPIServer.
	restarted []*Process
}

// Options say what to register.
type Options struct {
	// Overlay names the install (manifests/overlays/OVERLAY) whose webhook
	// configurations are registered; default DefaultOverlay.
	Overlay string
	// Webhooks are the kinds of configuration to register
	// ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration");
	// empty: both. envtest points their clientConfig at WebhookBindAddress
	// and changes nothing else (selectors, matchConditions, timeouts stay).
	Webhooks []string
	// NoWebhooks registers none: the suite applies the manifests itself.
	NoWebhooks bool
	// CRDDirectories hold CustomResourceDefinitions to install first.
	CRDDirectories []string
}

// webhookConfigurations picks the configurations to register from the
// rendered overlay.
func webhookConfigurations(opts Options) (envtest.WebhookInstallOptions, error) {
	hooks := envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"}
	if opts.NoWebhooks {
		return hooks, nil
	}
	overlay := cmp.Or(opts.Overlay, DefaultOverlay)
	objs, err := renderedOverlay(overlay)
	if err != nil {
		return hooks, err
	}
	wanted := func(kind string) bool { return len(opts.Webhooks) == 0 || slices.Contains(opts.Webhooks, kind) }
	for _, u := range objs {
		switch kind := u.GetKind(); {
		case kind == "MutatingWebhookConfiguration" && wanted(kind):
			c := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := Find([]*unstructured.Unstructured{u}, kind, u.GetName(), c); err != nil {
				return hooks, err
			}
			hooks.MutatingWebhooks = append(hooks.MutatingWebhooks, c)
		case kind == "ValidatingWebhookConfiguration" && wanted(kind):
			c := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := Find([]*unstructured.Unstructured{u}, kind, u.GetName(), c); err != nil {
				return hooks, err
			}
			hooks.ValidatingWebhooks = append(hooks.ValidatingWebhooks, c)
		}
	}
	if len(hooks.MutatingWebhooks)+len(hooks.ValidatingWebhooks) == 0 {
		return hooks, fmt.Errorf("manifests/overlays/%s installs no webhook configuration of kinds %v", overlay, opts.Webhooks)
	}
	return hooks, nil
}

// Start starts kube-apiserver and etcd and registers the webhook
// configurations. The caller must Stop it. Both return errors: the demo and
// TestMain call them.
func Start(opts Options) (*Environment, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	hooks, err := webhookConfigurations(opts)
	if err != nil {
		return nil, err
	}

	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		assets = filepath.Join(root, "bin", "envtest")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("no %s in %s: run `make envtest` to build it from Go modules (or set KUBEBUILDER_ASSETS)", bin, assets)
		}
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		Scheme:                scheme,
		WebhookInstallOptions: hooks,
		CRDDirectoryPaths:     opts.CRDDirectories,
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	e := &Environment{env: env, Config: cfg}
	if err := e.finish(scheme); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

func (e *Environment) finish(scheme *runtime.Scheme) error {
	var err error
	if e.Client, err = client.New(e.Config, client.Options{Scheme: scheme}); err != nil {
		return fmt.Errorf("building a client: %w", err)
	}
	if e.dir, err = os.MkdirTemp("", "svcguard-testenv-"); err != nil {
		return err
	}
	user, err := e.env.AddUser(envtest.User{Name: "svcguard-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("creating an admin user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("writing a kubeconfig: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, kubeconfig, 0o600); err != nil {
		return err
	}
	w := e.env.WebhookInstallOptions
	e.WebhookBindAddress = net.JoinHostPort(w.LocalServingHost, fmt.Sprint(w.LocalServingPort))
	e.CertDir = w.LocalServingCertDir
	e.CAData = w.LocalServingCAData
	return nil
}

// Stop stops the control plane and removes every temporary file.
func (e *Environment) Stop() error {
	var errs []error
	for _, p := range e.restarted {
		p.Kill()
	}
	if e.env != nil {
		errs = append(errs, e.env.Stop())
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}

// waitServing waits until a TLS handshake with the webhook address succeeds
// with a certificate the registered CA trusts.
func (e *Environment) waitServing(ctx context.Context) error {
	return e.WaitTLS(ctx, e.WebhookBindAddress)
}

// TLSConfig is a client TLS configuration that trusts the environment's CA
// for the loopback address.
func (e *Environment) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.CAData)
	host, _, _ := net.SplitHostPort(e.WebhookBindAddress)
	return &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
}

// WaitTLS waits until a TLS handshake with addr succeeds with a certificate
// the environment's CA trusts, or ctx ends.
func (e *Environment) WaitTLS(ctx context.Context, addr string) error {
	dialer := &tls.Dialer{Config: e.TLSConfig()}
	for {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn.Close()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("listener %s never served TLS: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// tlsDial opens a TLS connection to addr without verifying the peer, to
// look at what it serves.
func tlsDial(addr string) (*tls.Conn, error) {
	return tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) // inspection only: the caller compares what is served
}

// RegisteredWebhook is one webhook entry of the registered configurations.
type RegisteredWebhook struct {
	// Path is the URL path the entry points at, cleaned.
	Path string
	// Validating is true for entries of a ValidatingWebhookConfiguration.
	Validating bool
}

// RegisteredWebhooks lists the webhook entries of the configurations that the
// environment registered, so that a test can serve stand-ins on their paths.
func (e *Environment) RegisteredWebhooks() []RegisteredWebhook {
	var out []RegisteredWebhook
	add := func(validating bool, cc admissionregistrationv1.WebhookClientConfig) {
		if cc.URL == nil {
			return
		}
		if u, err := url.Parse(*cc.URL); err == nil {
			out = append(out, RegisteredWebhook{Path: path.Clean(u.Path), Validating: validating})
		}
	}
	for _, cfg := range e.env.WebhookInstallOptions.MutatingWebhooks {
		for _, w := range cfg.Webhooks {
			add(false, w.ClientConfig)
		}
	}
	for _, cfg := range e.env.WebhookInstallOptions.ValidatingWebhooks {
		for _, w := range cfg.Webhooks {
			add(true, w.ClientConfig)
		}
	}
	return out
}

// UserConfig returns a rest.Config that authenticates as user name, with no
// permissions but those RBAC grants it: for tests that prove a Role.
func (e *Environment) UserConfig(t testing.TB, name string) *rest.Config {
	t.Helper()
	user, err := e.env.AddUser(envtest.User{Name: name}, nil)
	if err != nil {
		t.Fatalf("adding user %s: %v", name, err)
	}
	return user.Config()
}

// ShippedRBACConfig returns a rest.Config for a new user that holds exactly
// the named ClusterRoles as manifests/overlays/overlay installs them, so that
// a test proves the shipped RBAC is enough. The grants are removed when the
// test ends.
func (e *Environment) ShippedRBACConfig(t testing.TB, user, overlay string, roles ...string) *rest.Config {
	t.Helper()
	ctx := context.Background()
	for _, m := range roles {
		role := ShippedClusterRole(t, overlay, m)
		name := role.Name + "-" + user
		role.ObjectMeta = metav1.ObjectMeta{Name: name}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		}
		for _, obj := range []client.Object{role, binding} {
			if err := e.Client.Create(ctx, obj); err != nil {
				t.Fatalf("granting ClusterRole %s of manifests/overlays/%s to %s: %v", m, overlay, user, err)
			}
			t.Cleanup(func() { _ = e.Client.Delete(context.Background(), obj) })
		}
	}
	return e.UserConfig(t, user)
}
