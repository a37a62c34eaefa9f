package servicehost

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/svcguard/svcguard/pkg/audit"
	"github.com/svcguard/svcguard/pkg/metrics"
)

// The ConfigMap keys the policy twin reads its values from (its params):
// the flags --service-host and --service-port, which the Deployment takes
// from the same keys.
const (
	HostKey = "service-host"
	PortKey = "service-port"
)

// TwinObjects are what the leader reads to judge the policy twin: the
// MutatingAdmissionPolicy, its binding (of the same name), and the
// ConfigMap the binding names. A nil field was not found.
type TwinObjects struct {
	Policy  *admissionregistrationv1.MutatingAdmissionPolicy
	Binding *admissionregistrationv1.MutatingAdmissionPolicyBinding
	Params  *corev1.ConfigMap
}

// TwinState is the verdict on the policy twin.
type TwinState struct {
	// Active: the twin exists, is bound to the whole cluster, and injects
	// what the webhook injects.
	Active bool
	// Reason says why it is not active, and what to do; empty when active.
	Reason string
}

// JudgeTwin decides whether the policy twin named name is active for in.
// It is pure: the objects are read elsewhere.
//
// MutatingAdmissionPolicy objects carry no status (unlike
// ValidatingAdmissionPolicy, whose status.typeChecking reports type
// errors): an expression that fails shows only when the API server
// evaluates it, in its metric apiserver_mutating_admission_policy_check_total
// (alert SvcguardInjectionPolicyErrors). What JudgeTwin checks is that the
// twin is there and reads the same values as the webhook.
func JudgeTwin(name string, objs TwinObjects, in Injection) TwinState {
	inactive := func(format string, args ...any) TwinState {
		return TwinState{Reason: fmt.Sprintf(format, args...)}
	}
	p, b, cm := objs.Policy, objs.Binding, objs.Params
	switch {
	case p == nil:
		return inactive("MutatingAdmissionPolicy %s not found: install manifests/components/policy (the default overlay includes it)", name)
	case p.Spec.ParamKind == nil || p.Spec.ParamKind.APIVersion != "v1" || p.Spec.ParamKind.Kind != "ConfigMap":
		return inactive("MutatingAdmissionPolicy %s does not take a v1 ConfigMap as its params: apply manifests/components/policy again", name)
	case b == nil:
		return inactive("MutatingAdmissionPolicyBinding %s not found, so the policy applies to nothing: install manifests/components/policy", name)
	case b.Spec.PolicyName != name:
		return inactive("MutatingAdmissionPolicyBinding %s binds policy %q, not %q: apply manifests/components/policy again", name, b.Spec.PolicyName, name)
	case b.Spec.MatchResources != nil && (b.Spec.MatchResources.NamespaceSelector != nil || b.Spec.MatchResources.ObjectSelector != nil ||
		len(b.Spec.MatchResources.ResourceRules) > 0 || len(b.Spec.MatchResources.ExcludeResourceRules) > 0):
		return inactive("MutatingAdmissionPolicyBinding %s narrows the policy with matchResources, so it skips Pods the webhook injects: remove them", name)
	case b.Spec.ParamRef == nil || b.Spec.ParamRef.Name == "":
		return inactive("MutatingAdmissionPolicyBinding %s names no ConfigMap in paramRef.name: apply manifests/components/policy again", name)
	case cm == nil:
		return inactive("ConfigMap %s/%s, which binding %s reads its values from, does not exist: apply the manifests again",
			b.Spec.ParamRef.Namespace, b.Spec.ParamRef.Name, name)
	}
	for _, kv := range []struct{ key, want string }{{HostKey, in.Host}, {PortKey, in.Port}} {
		if got := cm.Data[kv.key]; got != kv.want {
			return inactive("ConfigMap %s/%s, which binding %s reads, has %s %q but svcguard injects %q: the two injectors disagree; set both from one ConfigMap (apply the manifests again)",
				cm.Namespace, cm.Name, name, kv.key, got, kv.want)
		}
	}
	return TwinState{Active: true}
}

// TwinCheck is the leader's periodic check of the policy twin: it reads the
// objects, judges them with JudgeTwin, exports the verdict as
// svcguard_injection_policy_active{policy=NAME} and keeps it for Note.
type TwinCheck struct {
	// Name is the policy's and the binding's name (--injection-policy).
	Name string
	// Injection is what the webhook injects; the twin must inject the same.
	Injection Injection
	// Client reads the three objects.
	Client kubernetes.Interface
	// Interval is the time between checks.
	Interval time.Duration
	// Log receives changes of the verdict.
	Log logr.Logger

	mu      sync.Mutex
	state   *TwinState
	checked time.Time
}

// Start checks at once and then every Interval until ctx (the leader's term)
// ends; then the gauge is removed, since only the leader reports.
func (c *TwinCheck) Start(ctx context.Context) error {
	gauge := metrics.InjectionPolicyActive.WithLabelValues(c.Name)
	defer func() {
		metrics.InjectionPolicyActive.DeleteLabelValues(c.Name)
		c.mu.Lock()
		c.state = nil
		c.mu.Unlock()
	}()
	audit.Passes(ctx, c.Interval, nil, func(ctx context.Context) {
		objs, err := c.read(ctx)
		state := TwinState{Reason: fmt.Sprintf("cannot read the policy twin: %v", err)}
		if err == nil {
			state = JudgeTwin(c.Name, objs, c.Injection)
		}
		if state.Active {
			gauge.Set(1)
		} else {
			gauge.Set(0)
		}
		c.mu.Lock()
		if c.state == nil || *c.state != state {
			c.Log.Info("injection policy check", "policy", c.Name, "active", state.Active, "reason", state.Reason)
		}
		c.state, c.checked = &state, time.Now()
		c.mu.Unlock()
	})
	return nil
}

// read gets the policy, the binding and the ConfigMap the binding names; an
// object that does not exist is nil, any other error is returned.
func (c *TwinCheck) read(ctx context.Context) (TwinObjects, error) {
	var objs TwinObjects
	api := c.Client.AdmissionregistrationV1()
	policy, err := api.MutatingAdmissionPolicies().Get(ctx, c.Name, metav1.GetOptions{})
	if objs.Policy, err = found(policy, err); err != nil {
		return objs, err
	}
	binding, err := api.MutatingAdmissionPolicyBindings().Get(ctx, c.Name, metav1.GetOptions{})
	if objs.Binding, err = found(binding, err); err != nil {
		return objs, err
	}
	if ref := objs.Binding; ref != nil && ref.Spec.ParamRef != nil && ref.Spec.ParamRef.Name != "" {
		cm, err := c.Client.CoreV1().ConfigMaps(ref.Spec.ParamRef.Namespace).Get(ctx, ref.Spec.ParamRef.Name, metav1.GetOptions{})
		if objs.Params, err = found(cm, err); err != nil {
			return objs, err
		}
	}
	return objs, nil
}

// found maps NotFound to nil, no error.
func found[T any](obj *T, err error) (*T, error) {
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return obj, nil
}

// Note is the check's line in /readyz?verbose. It never affects readiness:
// the webhook injects with or without its twin.
func (c *TwinCheck) Note() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state == nil:
		return fmt.Sprintf("policy twin %s: checked by the leader (svcguard_injection_policy_active)", c.Name)
	case c.state.Active:
		return fmt.Sprintf("policy twin %s: active (checked %s)", c.Name, c.checked.UTC().Format(time.RFC3339))
	default:
		return fmt.Sprintf("policy twin %s: inactive (checked %s): %s", c.Name, c.checked.UTC().Format(time.RFC3339), c.state.Reason)
	}
}
