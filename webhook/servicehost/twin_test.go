package servicehost

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// twin is a healthy set of the twin's objects for Injection{testHost, testPort}.
func twin() TwinObjects {
	return TwinObjects{
		Policy: &admissionregistrationv1.MutatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "twin"},
			Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{Variables: []admissionregistrationv1.Variable{
				{Name: HostVariable, Expression: raw(testHost)},
				{Name: PortVariable, Expression: raw(testPort)},
				{Name: "valid", Expression: "variables.serviceHost != ''"},
			}},
		},
		Binding: &admissionregistrationv1.MutatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "twin"},
			Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: "twin"},
		},
	}
}

// raw is value as the twin's raw triple-quoted CEL literal.
func raw(value string) string { return "r'''" + value + "'''" }

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
		{"no binding", func(o *TwinObjects) { o.Binding = nil },
			"MutatingAdmissionPolicyBinding twin not found, so the policy applies to nothing: install manifests/components/policy"},
		{"binding of another policy", func(o *TwinObjects) { o.Binding.Spec.PolicyName = "other" },
			`MutatingAdmissionPolicyBinding twin binds policy "other", not "twin": apply manifests/components/policy again`},
		{"binding narrowed to some namespaces", func(o *TwinObjects) {
			o.Binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"team": "a"}}}
		}, "MutatingAdmissionPolicyBinding twin narrows the policy with matchResources, so it skips Pods the webhook injects: remove them"},
		{"binding narrowed by a rule", func(o *TwinObjects) {
			o.Binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{ExcludeResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{}}}
		}, "MutatingAdmissionPolicyBinding twin narrows the policy with matchResources, so it skips Pods the webhook injects: remove them"},
		{"matchResources: {} as the API server stores it narrow nothing", func(o *TwinObjects) {
			o.Binding.Spec.MatchResources = &admissionregistrationv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{},
				ObjectSelector: &metav1.LabelSelector{}}
		}, ""},
		{"another host", func(o *TwinObjects) { o.Policy.Spec.Variables[0].Expression = raw("10.9.9.9") },
			`MutatingAdmissionPolicy twin injects serviceHost "10.9.9.9" but svcguard injects "10.0.0.1" (--service-host): the two injectors disagree, and the policy runs first; apply the manifests again, which write both from manifests/base/injection.env`},
		{"no port where svcguard injects one", func(o *TwinObjects) { o.Policy.Spec.Variables[1].Expression = raw("") },
			`MutatingAdmissionPolicy twin injects servicePort "" but svcguard injects "6443" (--service-port): the two injectors disagree, and the policy runs first; apply the manifests again, which write both from manifests/base/injection.env`},
		{"a value that is not a plain literal", func(o *TwinObjects) { o.Policy.Spec.Variables[0].Expression = "params.data['service-host']" },
			"MutatingAdmissionPolicy twin has no variable serviceHost holding a raw string literal (r'''VALUE'''): apply manifests/components/policy again"},
		{"an escaped literal", func(o *TwinObjects) { o.Policy.Spec.Variables[0].Expression = `'10.0.0.1\''` },
			"MutatingAdmissionPolicy twin has no variable serviceHost holding a raw string literal (r'''VALUE'''): apply manifests/components/policy again"},
		{"no port variable", func(o *TwinObjects) { o.Policy.Spec.Variables = o.Policy.Spec.Variables[:1] },
			"MutatingAdmissionPolicy twin has no variable servicePort holding a raw string literal (r'''VALUE'''): apply manifests/components/policy again"},
		{"a literal with spaces around it", func(o *TwinObjects) { o.Policy.Spec.Variables[0].Expression = " " + raw("10.0.0.1") + "\n" }, ""},
		{"a literal that ends early", func(o *TwinObjects) { o.Policy.Spec.Variables[0].Expression = raw("10.0.0.1" + "'''" + " + x") },
			"MutatingAdmissionPolicy twin has no variable serviceHost holding a raw string literal (r'''VALUE'''): apply manifests/components/policy again"},
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
	objs.Policy.Spec.Variables[0].Expression = raw("10.9.9.9")
	client := fake.NewClientset(objs.Policy, objs.Binding)
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
	if got, want := c.Note(), `MutatingAdmissionPolicy twin injects serviceHost "10.9.9.9" but svcguard injects "10.0.0.1"`; !strings.Contains(got, want) {
		t.Errorf("while leading, expected a note containing %q, got %q", want, got)
	}
	cancel()
	<-done
	if got := c.Note(); !strings.Contains(got, "checked by the leader") {
		t.Errorf("after the term: %q", got)
	}
}
