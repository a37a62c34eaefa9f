package perf

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

// admission is one way the API server may admit the requests under test:
// install sets it up and returns what removes it.
type admission struct {
	name    string
	install func(b *testing.B) func()
}

// shippedWebhooks registers svcguard's configuration of kind (rendered from
// manifests/overlays/default), pointed at the benchmark's replica.
func shippedWebhooks(kind string) func(b *testing.B) func() {
	return func(b *testing.B) func() {
		objs := testenv.Rendered(b, testenv.DefaultOverlay)
		url := func(cc *admissionregistrationv1.WebhookClientConfig) {
			u := "https://" + svcguardAddr + *cc.Service.Path
			cc.URL, cc.Service, cc.CABundle = &u, nil, env.CAData
		}
		var obj client.Object
		switch kind {
		case "MutatingWebhookConfiguration":
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			must(b, testenv.Find(objs, kind, "svcguard", &mwc))
			for i := range mwc.Webhooks {
				url(&mwc.Webhooks[i].ClientConfig)
			}
			obj = &mwc
		default:
			var vwc admissionregistrationv1.ValidatingWebhookConfiguration
			must(b, testenv.Find(objs, kind, "svcguard", &vwc))
			for i := range vwc.Webhooks {
				url(&vwc.Webhooks[i].ClientConfig)
			}
			obj = &vwc
		}
		obj.SetResourceVersion("")
		must(b, env.Client.Create(context.Background(), obj))
		return func() { must(b, env.Client.Delete(context.Background(), obj)) }
	}
}

// policyTwin installs the shipped policy twin (manifests/components/policy,
// a JSON patch policy) with the benchmark's values.
func policyTwin(b *testing.B) func() {
	ctx := context.Background()
	objs := testenv.PolicyTwin(b, serviceHost, "6443")
	must(b, testenv.Apply(ctx, env.Config, objs, false))
	return func() {
		must(b, env.Client.Delete(ctx, &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: testenv.PolicyTwinName}}))
		must(b, env.Client.Delete(ctx, &admissionregistrationv1.MutatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: testenv.PolicyTwinName}}))
	}
}

// both installs each of ways and removes them in reverse.
func both(ways ...func(b *testing.B) func()) func(b *testing.B) func() {
	return func(b *testing.B) func() {
		var removes []func()
		for _, w := range ways {
			removes = append(removes, w(b))
		}
		return func() {
			for i := len(removes) - 1; i >= 0; i-- {
				removes[i]()
			}
		}
	}
}

// applyConfigurationPolicy is a MutatingAdmissionPolicy that sets the
// variables in every container that sets neither with an apply
// configuration, the other kind of patch a policy can make. It cannot keep
// the twin's insert position before $(VAR) references (an apply
// configuration merges env entries by name and appends new ones), so the
// twin is a JSON patch; what is measured here is what the other kind costs,
// on Pods without references.
func applyConfigurationPolicy(b *testing.B) func() {
	ctx := context.Background()
	policy := &admissionregistrationv1.MutatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "perf-service-host"},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				},
			}}},
			FailurePolicy:      ptr.To(admissionregistrationv1.Fail),
			ReinvocationPolicy: admissionregistrationv1.NeverReinvocationPolicy,
			Mutations: []admissionregistrationv1.Mutation{{
				PatchType: admissionregistrationv1.PatchTypeApplyConfiguration,
				ApplyConfiguration: &admissionregistrationv1.ApplyConfiguration{Expression: fmt.Sprintf(`Object{spec: Object.spec{
  containers: object.spec.containers.filter(c, !has(c.env) || !c.env.exists(e, e.name == '%[1]s' || e.name == '%[2]s')).map(c,
    Object.spec.containers{name: c.name, env: [
      Object.spec.containers.env{name: '%[1]s', value: '%[3]s'},
      Object.spec.containers.env{name: '%[2]s', value: '6443'}]})}}`, servicehost.HostVar, servicehost.PortVar, serviceHost)},
			}},
		},
	}
	binding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "perf-service-host"},
		Spec:       admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{PolicyName: policy.Name},
	}
	must(b, env.Client.Create(ctx, policy))
	must(b, env.Client.Create(ctx, binding))
	return func() {
		must(b, env.Client.Delete(ctx, binding))
		must(b, env.Client.Delete(ctx, policy))
	}
}

// nodePortPolicy is a ValidatingAdmissionPolicy that denies moving a port's
// nodePort, the heart of svcguard's node-port guard without its rules.
func nodePortPolicy(b *testing.B) func() {
	ctx := context.Background()
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "perf-node-ports"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"services"}},
				},
			}}},
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			Validations: []admissionregistrationv1.Validation{{
				Expression: `object.spec.ports.all(p, !has(p.nodePort) || !oldObject.spec.ports.exists(o,
  o.name == p.name && has(o.nodePort) && o.nodePort != p.nodePort))`,
				Message: "moving a nodePort is denied",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "perf-node-ports"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}},
	}
	must(b, env.Client.Create(ctx, policy))
	must(b, env.Client.Create(ctx, binding))
	return func() {
		must(b, env.Client.Delete(ctx, binding))
		must(b, env.Client.Delete(ctx, policy))
	}
}

// apiPod is fixtures.TypicalPod(containers) as a client creates it: named
// ns/name, without the owner a ReplicaSet would set.
func apiPod(ns, name string, containers int) *corev1.Pod {
	pod := fixtures.TypicalPod(containers)
	pod.Namespace, pod.Name, pod.OwnerReferences = ns, name, nil
	return pod
}

func must(b *testing.B, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// reportLatencies reports the p50 and p99 of took on b.
func reportLatencies(b *testing.B, took []time.Duration) {
	slices.Sort(took)
	b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
	b.ReportMetric(ms(took[len(took)*99/100]), "p99-ms")
	b.ReportMetric(float64(len(took)), "requests")
}

// waitInjected creates dry-run Pods until the API server stores them with
// the variable (an admission policy takes effect a moment after it is
// created), or fails b.
func waitInjected(b *testing.B, ns string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		pod := apiPod(ns, "probe", 1)
		if err := env.Client.Create(context.Background(), pod, client.DryRunAll); err == nil && len(pod.Spec.Containers[0].Env) > 2 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.Fatal("the injection never took effect")
}

// BenchmarkAPIServerPodCreate creates 5-container Pods one after another
// through the API server and reports the create latency with no admission,
// with svcguard's webhook, with its policy twin (a JSON patch policy), with
// both as shipped (the webhook's matchConditions skip the call the twin made
// needless), and with an apply-configuration policy doing the same,
// alternated A B C D E, twice.
func BenchmarkAPIServerPodCreate(b *testing.B) {
	webhook := shippedWebhooks("MutatingWebhookConfiguration")
	ways := []admission{
		{"none", func(*testing.B) func() { return func() {} }},
		{"svcguard", webhook},
		{"twin", policyTwin},
		{"twin-and-svcguard", both(policyTwin, webhook)},
		{"apply-configuration", applyConfigurationPolicy},
	}
	const creates = 200
	for round := 1; round <= 2; round++ {
		for _, way := range ways {
			b.Run(fmt.Sprintf("%s/round=%d", way.name, round), func(b *testing.B) {
				ns := fmt.Sprintf("perf-%s-%d-%d", way.name, round, time.Now().UnixNano())
				must(b, env.Client.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
				remove := way.install(b)
				defer remove()
				if way.name != "none" {
					waitInjected(b, ns)
				}
				took := make([]time.Duration, 0, creates)
				for i := range creates {
					pod := apiPod(ns, fmt.Sprintf("p%d", i), 5)
					start := time.Now()
					must(b, env.Client.Create(context.Background(), pod))
					took = append(took, time.Since(start))
				}
				reportLatencies(b, took)
			})
			settle()
		}
	}
}

// BenchmarkAPIServerServiceUpdate updates a NodePort Service (a label, its
// nodePort unchanged) one update after another and reports the latency with
// no admission, with svcguard's validating webhooks, and with a
// ValidatingAdmissionPolicy that denies nodePort moves.
func BenchmarkAPIServerServiceUpdate(b *testing.B) {
	ways := []admission{
		{"none", func(*testing.B) func() { return func() {} }},
		{"svcguard", shippedWebhooks("ValidatingWebhookConfiguration")},
		{"policy", nodePortPolicy},
	}
	const updates = 200
	for round := 1; round <= 2; round++ {
		for _, way := range ways {
			b.Run(fmt.Sprintf("%s/round=%d", way.name, round), func(b *testing.B) {
				ns := fmt.Sprintf("perf-svc-%s-%d-%d", way.name, round, time.Now().UnixNano())
				ctx := context.Background()
				must(b, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
				svc := fixtures.Service(ns, "gateway", fixtures.Port("https", 443, 0))
				must(b, env.Client.Create(ctx, svc))
				remove := way.install(b)
				defer remove()
				time.Sleep(2 * time.Second) // policies and configurations take effect a moment after they are created
				took := make([]time.Duration, 0, updates)
				for i := range updates {
					svc.Labels = map[string]string{"rev": fmt.Sprint(i)}
					start := time.Now()
					err := env.Client.Update(ctx, svc)
					if apierrors.IsConflict(err) {
						must(b, env.Client.Get(ctx, client.ObjectKeyFromObject(svc), svc))
						continue
					}
					must(b, err)
					took = append(took, time.Since(start))
				}
				reportLatencies(b, took)
			})
			settle()
		}
	}
}
