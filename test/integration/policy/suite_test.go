// Package policy_test is the envtest suite of the service-host webhook's
// policy twin (manifests/components/policy), run by `make test` and `make
// integration`: the shipped MutatingAdmissionPolicy, binding and ConfigMap
// on a real kube-apiserver, beside the shipped MutatingWebhookConfiguration
// pointing at an in-process svcguard.
package policy_test

import (
	"context"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/readiness"
	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

const (
	suiteHost = "203.0.113.20"
	suitePort = "6443"
)

// webhookCalls counts the admission requests the API server sent the
// service-host webhook (readiness's self-tests excluded).
var webhookCalls atomic.Int64

// injector is the service-host handler the suite's server answers with;
// setMode swaps it between one that injects the port and one that does not.
var injector atomic.Pointer[servicehost.Handler]

// handlers are the suite's two service-host handlers, by port ("" or suitePort).
var handlers = map[string]*servicehost.Handler{}

var suite = &testenv.Suite{
	Options: testenv.Options{Webhooks: []string{"MutatingWebhookConfiguration"}},
	Register: func(s *server.Server) error {
		built, err := servicehost.Build(&servicehost.Options{ServiceHost: suiteHost, ServicePort: suitePort}, s.Dependencies())
		if err != nil {
			return err
		}
		withPort, ok := built.Webhook.Handler.(*servicehost.Handler)
		if !ok {
			return fmt.Errorf("servicehost.Build returned a %T, not a *servicehost.Handler", built.Webhook.Handler)
		}
		hostOnly := *withPort
		hostOnly.Injection.Port = ""
		handlers[suitePort], handlers[""] = withPort, &hostOnly
		injector.Store(withPort)
		built.Webhook.Handler = admission.HandlerFunc(func(ctx context.Context, req admission.Request) admission.Response {
			if !readiness.IsSelfTest(ctx) {
				webhookCalls.Add(1)
			}
			return injector.Load().Handle(ctx, req)
		})
		s.Register(built.Webhook)
		return nil
	},
}

func TestMain(m *testing.M) { suite.Main(m) }

// mode is which injectors the API server has.
type mode struct {
	name          string
	webhook, twin bool
}

// setMode registers the webhook configuration and the twin's binding as m
// says, both injecting suiteHost and port ("" for none), and waits until
// the API server acts on it: a dry-run probe Pod is injected by the webhook
// alone, by the twin alone (the webhook gets no call), or by neither.
func setMode(t *testing.T, m mode, port, probeNS string) {
	t.Helper()
	ctx := context.Background()
	te := suite.Env
	injector.Store(handlers[port])
	objs := testenv.PolicyTwin(t, suiteHost, port)
	bindingObj := objs[len(objs)-1:] // applied last, once the webhook alone has been seen
	if err := testenv.Apply(ctx, te.Config, objs[:len(objs)-1], false); err != nil {
		t.Fatal(err)
	}
	binding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: testenv.PolicyTwinName}}
	if err := client.IgnoreNotFound(te.Client.Delete(ctx, binding)); err != nil {
		t.Fatal(err)
	}
	setWebhook(t, m.webhook)
	want := wantEnv(port)
	// Without the binding the probe shows the webhook alone: injected
	// through a call to the webhook (while the API server still applies
	// the twin, the webhook finds nothing missing and gets no call), or not
	// injected at all.
	waitProbe(t, probeNS, func(env []corev1.EnvVar, called bool) bool {
		if !m.webhook {
			return len(env) == 0 && !called
		}
		return reflect.DeepEqual(env, want) && called
	}, fmt.Sprintf("the webhook configuration registered=%v and no policy twin", m.webhook))
	if m.twin {
		if err := testenv.Apply(ctx, te.Config, bindingObj, false); err != nil {
			t.Fatal(err)
		}
		waitProbe(t, probeNS, func(env []corev1.EnvVar, called bool) bool { return reflect.DeepEqual(env, want) && !called },
			"the policy twin bound")
	}
}

// registered is the webhook configuration as envtest registered it at the
// start of the suite, kept so that setWebhook can register it again.
var registered *admissionregistrationv1.MutatingWebhookConfiguration

// setWebhook registers or removes the suite's MutatingWebhookConfiguration.
func setWebhook(t *testing.T, on bool) {
	t.Helper()
	ctx := context.Background()
	te := suite.Env
	var current admissionregistrationv1.MutatingWebhookConfiguration
	err := te.Client.Get(ctx, client.ObjectKey{Name: "svcguard"}, &current)
	switch {
	case err == nil && registered == nil:
		registered = current.DeepCopy()
	case err != nil && !apierrors.IsNotFound(err):
		t.Fatal(err)
	}
	switch {
	case on && apierrors.IsNotFound(err):
		c := registered.DeepCopy()
		c.ResourceVersion, c.UID = "", ""
		if err := te.Client.Create(ctx, c); err != nil {
			t.Fatal(err)
		}
	case !on && err == nil:
		if err := te.Client.Delete(ctx, &current); err != nil {
			t.Fatal(err)
		}
	}
}

// waitProbe waits until the env of a probe Pod's container, and whether
// the webhook was called for it, are what want accepts.
func waitProbe(t *testing.T, ns string, want func(env []corev1.EnvVar, called bool) bool, state string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		before := webhookCalls.Load()
		env := probe(t, ns)
		if want(env, webhookCalls.Load() != before) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("with %s, the API server never acted so within 30 s (last probe's env: %v)", state, env)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// probe creates a one-container Pod by dry run in ns and returns the env
// the API server would store it with.
func probe(t *testing.T, ns string) []corev1.EnvVar {
	t.Helper()
	pod := fixtures.Pod(ns, "probe", fixtures.Container("app", "app"))
	if err := suite.Env.Client.Create(context.Background(), pod, client.DryRunAll); err != nil {
		t.Fatalf("creating a probe Pod by dry run: %v", err)
	}
	return pod.Spec.Containers[0].Env
}

// wantEnv is what both injectors set in a container that lacks the pair,
// with port ("" for none).
func wantEnv(port string) []corev1.EnvVar {
	if port == "" {
		return fixtures.Env(servicehost.HostVar, suiteHost)
	}
	return fixtures.Env(servicehost.HostVar, suiteHost, servicehost.PortVar, port)
}

// created is a Pod as the API server stored it: each container's env by name.
type created map[string][]corev1.EnvVar

// createAll creates copies of pods in ns as a client would: each without
// its ephemeral containers, which `kubectl debug` then adds through the
// pods/ephemeralcontainers subresource. It returns what the API server
// stored, by Pod name.
func createAll(t *testing.T, ns string, pods []*corev1.Pod) map[string]created {
	t.Helper()
	ctx := context.Background()
	out := map[string]created{}
	for _, p := range pods {
		pod := p.DeepCopy()
		pod.Namespace = ns
		debug := pod.Spec.EphemeralContainers
		pod.Spec.EphemeralContainers = nil
		if err := suite.Env.Client.Create(ctx, pod); err != nil {
			t.Fatalf("creating Pod %s: %v", p.Name, err)
		}
		// One kubectl debug after another: each update adds one container to those the Pod has.
		for _, c := range debug {
			pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, c)
			if err := suite.Env.Client.SubResource("ephemeralcontainers").Update(ctx, pod); err != nil {
				t.Fatalf("adding ephemeral container %s to Pod %s: %v", c.Name, p.Name, err)
			}
		}
		var stored corev1.Pod
		if err := suite.Env.Client.Get(ctx, client.ObjectKeyFromObject(pod), &stored); err != nil {
			t.Fatal(err)
		}
		out[p.Name] = fixtures.Envs(&stored)
	}
	return out
}
