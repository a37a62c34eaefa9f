package servicehost

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// twin is a healthy set of the twin's objects for Injection{testHost, testPort}.
func twin() TwinObjects {
	return TwinObjects{
		Policy: &admissionregistrationv1.MutatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "twin"},
			Spec:       admissionregistrationv1.MutatingAdmissionPolicySpec{ParamKind: &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"}},
		},
		Binding: &admissionregistrationv1.MutatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "twin"},
			Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: "twin",
				ParamRef: &admissionregistrationv1.ParamRef{Namespace: "svcguard", Name: "params"}},
		},
		Params: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "svcguard", Name: "params"},
			Data: map[string]string{HostKey: testHost, PortKey: testPort}},
	}
}

func TestJudgeTwin(t *testing.T) {
	in := Injection{Host: testHost, Port: testPort}
	tests := []struct {
		name   string
		change func(*TwinObjects)
		// want is the reason; empty: active.
		want string
	}{
		{"installed and agreeing", func(*TwinObjects) {}, ""},
		{"no policy", func(o *TwinObjects) { o.Policy = nil },
			"MutatingAdmissionPolicy twin not found: install manifests/components/policy (the default overlay includes it)"},
		{"policy without params", func(o *TwinObjects) { o.Policy.Spec.ParamKind = nil },
			"MutatingAdmissionPolicy twin does not take a v1 ConfigMap as its params: apply manifests/components/policy again"},
		{"params of another kind", func(o *TwinObjects) { o.Policy.Spec.ParamKind.Kind = "Secret" },
			"MutatingAdmissionPolicy twin does not take a v1 ConfigMap as its params: apply manifests/components/policy again"},
		{"no binding", func(o *TwinObjects) { o.Binding = nil },
			"MutatingAdmissionPolicyBinding twin not found, so the policy applies to nothing: install manifests/components/policy"},
		{"binding of another policy", func(o *TwinObjects) { o.Binding.Spec.PolicyName = "other" },
			`MutatingAdmissionPolicyBinding twin binds policy "other", not "twin": apply manifests/components/policy again`},
		{"binding narrowed to some namespaces", func(o *TwinObjects) {
			o.Binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{}}
		}, "MutatingAdmissionPolicyBinding twin narrows the policy with matchResources, so it skips Pods the webhook injects: remove them"},
		{"empty matchResources narrow nothing", func(o *TwinObjects) { o.Binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{} }, ""},
		{"binding without paramRef", func(o *TwinObjects) { o.Binding.Spec.ParamRef = nil },
			"MutatingAdmissionPolicyBinding twin names no ConfigMap in paramRef.name: apply manifests/components/policy again"},
		{"ConfigMap gone", func(o *TwinObjects) { o.Params = nil },
			"ConfigMap svcguard/params, which binding twin reads its values from, does not exist: apply the manifests again"},
		{"another host", func(o *TwinObjects) { o.Params.Data[HostKey] = "10.9.9.9" },
			`ConfigMap svcguard/params, which binding twin reads, has service-host "10.9.9.9" but svcguard injects "10.0.0.1": the two injectors disagree; set both from one ConfigMap (apply the manifests again)`},
		{"port missing", func(o *TwinObjects) { delete(o.Params.Data, PortKey) },
			`ConfigMap svcguard/params, which binding twin reads, has service-port "" but svcguard injects "6443": the two injectors disagree; set both from one ConfigMap (apply the manifests again)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			objs := twin()
			tc.change(&objs)
			got := JudgeTwin("twin", objs, in)
			if got.Active != (tc.want == "") || got.Reason != tc.want {
				t.Errorf("expected active=%v reason %q, got active=%v reason %q", tc.want == "", tc.want, got.Active, got.Reason)
			}
		})
	}
}

// TestTwinCheckNotes follows the check through one leader term against a
// fake API: the note a follower shows, the verdict while leading, and the
// follower's note again once the term ends.
func TestTwinCheckNotes(t *testing.T) {
	objs := twin()
	objs.Binding.Spec.ParamRef.Name = "missing"
	client := fake.NewClientset(objs.Policy, objs.Binding, objs.Params)
	c := &TwinCheck{Name: "twin", Injection: Injection{Host: testHost, Port: testPort}, Client: client, Interval: time.Hour, Log: logr.Discard()}
	if got := c.Note(); got != "policy twin twin: checked by the leader (svcguard_injection_policy_active)" {
		t.Errorf("before leading: %q", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Start(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(c.Note(), "inactive") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got, want := c.Note(), "ConfigMap svcguard/missing, which binding twin reads its values from, does not exist"; !strings.Contains(got, want) {
		t.Errorf("while leading, expected a note containing %q, got %q", want, got)
	}
	cancel()
	<-done
	if got := c.Note(); !strings.Contains(got, "checked by the leader") {
		t.Errorf("after the term: %q", got)
	}
}
