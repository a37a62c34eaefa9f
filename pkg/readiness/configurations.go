package readiness

import (
	"context"
	"fmt"
	"net/url"
	pathpkg "path"
	"strings"
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Configurations keeps the cluster's svcguard webhook configurations current
// with one informer each, restricted to the configured name so that RBAC can
// grant exactly that object. It is a controller-runtime Runnable that every
// replica runs (no leader election).
type Configurations struct {
	sources []*configurationSource
}

type configurationSource struct {
	kind, name string
	informer   cache.SharedIndexInformer

	mu      sync.Mutex
	lastErr error
}

// NewConfigurations watches the MutatingWebhookConfiguration and the
// ValidatingWebhookConfiguration with the given names; an empty name is not
// consulted.
func NewConfigurations(client kubernetes.Interface, mutating, validating string) *Configurations {
	c := &Configurations{}
	rest := client.AdmissionregistrationV1().RESTClient()
	if mutating != "" {
		c.add(rest, "MutatingWebhookConfiguration", "mutatingwebhookconfigurations", mutating,
			&admissionregistrationv1.MutatingWebhookConfiguration{})
	}
	if validating != "" {
		c.add(rest, "ValidatingWebhookConfiguration", "validatingwebhookconfigurations", validating,
			&admissionregistrationv1.ValidatingWebhookConfiguration{})
	}
	return c
}

func (c *Configurations) add(client cache.Getter, kind, resource, name string, obj runtime.Object) {
	lw := cache.NewFilteredListWatchFromClient(client, resource, metav1.NamespaceAll, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
	src := &configurationSource{kind: kind, name: name, informer: cache.NewSharedIndexInformer(lw, obj, 0, cache.Indexers{})}
	_ = src.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		src.mu.Lock()
		src.lastErr = err
		src.mu.Unlock()
	})
	c.sources = append(c.sources, src)
}

// Start runs the informers until ctx ends.
func (c *Configurations) Start(ctx context.Context) error {
	for _, s := range c.sources {
		go s.informer.RunWithContext(ctx)
	}
	<-ctx.Done()
	return nil
}

// NeedLeaderElection tells controller-runtime that every replica watches.
func (c *Configurations) NeedLeaderElection() bool { return false }

// Lookup returns how the cluster registers path now.
func (c *Configurations) Lookup(path string) Registration {
	var objects []runtime.Object
	var unreadable []string
	waiting := false
	for _, s := range c.sources {
		if !s.informer.HasSynced() {
			s.mu.Lock()
			why := "not read yet"
			if s.lastErr != nil {
				why = s.lastErr.Error()
			} else {
				waiting = true
			}
			s.mu.Unlock()
			unreadable = append(unreadable, fmt.Sprintf("%s %s cannot be read (%s)", s.kind, s.name, why))
			continue
		}
		for _, o := range s.informer.GetStore().List() {
			objects = append(objects, o.(runtime.Object))
		}
	}
	r := RegistrationOf(path, objects, unreadable)
	r.Waiting = waiting
	return r
}

// RegistrationOf finds the entries of configurations that point at path and
// derives the live policy. unreadable names configurations that could not be
// read: the policy is then assumed to be Fail, the safe side for a replica
// that cannot tell.
func RegistrationOf(path string, configurations []runtime.Object, unreadable []string) Registration {
	var entries []Entry
	for _, o := range configurations {
		switch cfg := o.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			for _, w := range cfg.Webhooks {
				if e, ok := entryFor(path, "MutatingWebhookConfiguration/"+cfg.Name, w.Name, w.FailurePolicy, w.ClientConfig); ok {
					entries = append(entries, e)
				}
			}
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			for _, w := range cfg.Webhooks {
				if e, ok := entryFor(path, "ValidatingWebhookConfiguration/"+cfg.Name, w.Name, w.FailurePolicy, w.ClientConfig); ok {
					entries = append(entries, e)
				}
			}
		}
	}
	r := Registration{Registered: len(entries) > 0, Known: len(unreadable) == 0, Entries: entries, Policy: admissionregistrationv1.Ignore}
	for _, e := range entries {
		if e.Policy != admissionregistrationv1.Ignore {
			r.Policy = admissionregistrationv1.Fail
		}
	}
	switch {
	case !r.Known:
		r.Registered, r.Policy = true, admissionregistrationv1.Fail
		r.Note = strings.Join(unreadable, "; ")
	case r.Registered:
		r.Note = "from " + entries[0].Configuration
	default:
		r.Note = "no consulted webhook configuration points at " + path
	}
	return r
}

func entryFor(path, configuration, webhook string, policy *admissionregistrationv1.FailurePolicyType,
	cc admissionregistrationv1.WebhookClientConfig,
) (Entry, bool) {
	e := Entry{Configuration: configuration, Webhook: webhook, Policy: admissionregistrationv1.Fail, CABundle: cc.CABundle}
	if policy != nil && *policy == admissionregistrationv1.Ignore {
		e.Policy = admissionregistrationv1.Ignore
	}
	switch {
	case cc.Service != nil:
		if cc.Service.Path == nil || pathpkg.Clean(*cc.Service.Path) != path {
			return Entry{}, false
		}
		e.ServerName = cc.Service.Name + "." + cc.Service.Namespace + ".svc"
	case cc.URL != nil:
		u, err := url.Parse(*cc.URL)
		// Paths are compared cleaned, as the listener's mux routes them
		// (envtest, for one, writes "https://host:port//path").
		if err != nil || pathpkg.Clean(u.Path) != path {
			return Entry{}, false
		}
		e.ServerName = u.Hostname()
	default:
		return Entry{}, false
	}
	return e, true
}
