package testenv

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Namespace creates a namespace named after the test, with labels, and
// empties and deletes it when the test ends.
func (e *Environment) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	// A DNS label: lower-case letters, digits and '-'.
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: strings.TrimRight(name, "-") + "-", Labels: labels}}
	if err := e.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("creating namespace for %s: %v", t.Name(), err)
	}
	t.Cleanup(func() { e.DeleteNamespace(t, ns.Name) })
	return ns.Name
}

// DeleteNamespace empties a namespace (EmptyNamespace), then deletes it.
func (e *Environment) DeleteNamespace(t testing.TB, name string) {
	t.Helper()
	e.EmptyNamespace(t, name)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := e.Client.Delete(context.Background(), ns); client.IgnoreNotFound(err) != nil {
		t.Errorf("deleting namespace %s: %v", name, err)
	}
}

// EmptyNamespace deletes the Pods and Services of a namespace. The envtest
// suites run no namespace controller (the e2e suite's
// kube-controller-manager does, later), so without this they would outlive
// their namespace and keep their nodePorts (and count as missed Pods) for
// the tests that follow, or for a re-run with -count. (A deleted namespace
// stays Terminating for the same reason: a test that needs a fixed name
// empties it and keeps it.)
func (e *Environment) EmptyNamespace(t testing.TB, name string) {
	t.Helper()
	ctx := context.Background()
	if err := e.Client.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(name), client.GracePeriodSeconds(0)); err != nil {
		t.Errorf("deleting the Pods of %s: %v", name, err)
	}
	var services corev1.ServiceList
	if err := e.Client.List(ctx, &services, client.InNamespace(name)); err != nil {
		t.Errorf("listing the Services of %s: %v", name, err)
	}
	for i := range services.Items {
		if err := e.Client.Delete(ctx, &services.Items[i]); client.IgnoreNotFound(err) != nil {
			t.Errorf("deleting Service %s/%s: %v", name, services.Items[i].Name, err)
		}
	}
}

// Events lists the events.k8s.io Events with reason about the object
// namespace/name, as svcguard's audits write them.
func (e *Environment) Events(t testing.TB, namespace, name, reason string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := e.Client.List(context.Background(), &list, client.InNamespace(namespace)); err != nil {
		t.Fatalf("listing Events in %s: %v", namespace, err)
	}
	var out []eventsv1.Event
	for _, ev := range list.Items {
		if ev.Regarding.Name == name && ev.Reason == reason {
			out = append(out, ev)
		}
	}
	return out
}

// Edit reads the object key into obj, lets edit change obj and writes it
// back, retrying on conflicts with other writers.
func (e *Environment) Edit(t testing.TB, key client.ObjectKey, obj client.Object, edit func()) {
	t.Helper()
	if err := e.update(context.Background(), key, obj, edit); err != nil {
		t.Fatalf("editing %T %s: %v", obj, key, err)
	}
}
