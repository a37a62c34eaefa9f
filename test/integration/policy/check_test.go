package policy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

// TestEnvtestLeaderReportsWhetherTheTwinIsActive runs the leader's check of
// the twin as svcguard's ServiceAccount with the RBAC components/policy
// ships: active once installed; inactive, with the reason, when the
// ConfigMap disagrees with what svcguard injects or the binding is gone;
// active again once repaired; and no gauge once the term ends.
func TestEnvtestLeaderReportsWhetherTheTwinIsActive(t *testing.T) {
	te := suite.Env
	ctx := context.Background()
	objs := testenv.PolicyTwin(t, suiteHost, suitePort)
	if err := testenv.Apply(ctx, te.Config, objs, false); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(te.ServiceAccountConfig(t, "svcguard", "svcguard"))
	if err != nil {
		t.Fatal(err)
	}
	check := &servicehost.TwinCheck{
		Name: testenv.PolicyTwinName, Injection: servicehost.Injection{Host: suiteHost, Port: suitePort},
		Client: cs, Interval: 100 * time.Millisecond, Log: log.Log,
	}
	term, end := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = check.Start(term); close(done) }()

	gauge := func() float64 {
		return testenv.GaugeValue(t, "svcguard_injection_policy_active", "policy", testenv.PolicyTwinName)
	}
	waitNote := func(want string, gaugeWant float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(check.Note(), want) || gauge() != gaugeWant {
			if time.Now().After(deadline) {
				t.Fatalf("expected the note to contain %q with svcguard_injection_policy_active %v; it says %q with %v", want, gaugeWant, check.Note(), gauge())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitNote("policy twin svcguard-service-host: active", 1)

	params := &corev1.ConfigMap{}
	key := client.ObjectKey{Namespace: "svcguard", Name: testenv.PolicyTwinParams}
	te.Edit(t, key, params, func() { params.Data[servicehost.HostKey] = "198.51.100.1" })
	waitNote(`inactive`, 0)
	waitNote(`ConfigMap svcguard/svcguard-injection, which binding svcguard-service-host reads, has service-host "198.51.100.1" but svcguard injects "203.0.113.20"`, 0)
	te.Edit(t, key, params, func() { params.Data[servicehost.HostKey] = suiteHost })
	waitNote("active (checked", 1)

	binding := &admissionregistrationv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: testenv.PolicyTwinName}}
	if err := te.Client.Delete(ctx, binding); err != nil {
		t.Fatal(err)
	}
	waitNote("MutatingAdmissionPolicyBinding svcguard-service-host not found, so the policy applies to nothing", 0)
	if err := testenv.Apply(ctx, te.Config, objs[len(objs)-1:], false); err != nil {
		t.Fatal(err)
	}
	waitNote("active (checked", 1)

	end()
	<-done
	if testenv.HasSeries(t, "svcguard_injection_policy_active", "policy", testenv.PolicyTwinName) {
		t.Error("a replica that no longer leads must not export svcguard_injection_policy_active")
	}
	if got := check.Note(); !strings.Contains(got, "checked by the leader") {
		t.Errorf("a replica that does not lead should say the leader checks, said %q", got)
	}
}
