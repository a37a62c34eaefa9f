package policy_test

import (
	"context"
	"fmt"
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
// ships: active once installed; inactive, with the reason, when the policy
// injects another host than svcguard or the binding is gone; active again
// once repaired; and no gauge once the term ends.
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

	// The policy injecting another host than svcguard: an injection.env changed and applied, the
	// Deployment not rolled yet.
	policy := &admissionregistrationv1.MutatingAdmissionPolicy{}
	key := client.ObjectKey{Name: testenv.PolicyTwinName}
	setHost := func(host string) {
		te.Edit(t, key, policy, func() {
			for i, v := range policy.Spec.Variables {
				if v.Name == servicehost.HostVariable {
					policy.Spec.Variables[i].Expression = "r'''" + host + "'''"
				}
			}
		})
	}
	setHost("198.51.100.1")
	waitNote(`MutatingAdmissionPolicy svcguard-service-host injects serviceHost "198.51.100.1" but svcguard injects "203.0.113.20" (--service-host)`, 0)
	setHost(suiteHost)
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

// TestEnvtestTwinInjectsNothingWithValuesSvcguardRefuses writes values into
// the twin that svcguard refuses as flags (a trailing space, quotes, a port
// out of range; injection.env keeps them verbatim): the twin then injects
// nothing, rather than a host no client can dial into every new container.
func TestEnvtestTwinInjectsNothingWithValuesSvcguardRefuses(t *testing.T) {
	te := suite.Env
	ctx := context.Background()
	setWebhook(t, false)
	t.Cleanup(func() { setWebhook(t, true) })
	ns := te.Namespace(t, nil)
	if err := testenv.Apply(ctx, te.Config, testenv.PolicyTwin(t, suiteHost, suitePort), false); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ host, port string }{
		{suiteHost + " ", suitePort}, {`"` + suiteHost + `"`, suitePort}, {"https://" + suiteHost, suitePort}, {"::ffff:10.0.0.1", suitePort},
		{"10.0.0", suitePort}, {"010.0.0.1", suitePort}, {"0.0.0.0", suitePort}, {"a'b", suitePort}, {`a\x2eb`, suitePort},
		{suiteHost, "0"}, {suiteHost, "65536"}, {suiteHost, `"6443"`}, {suiteHost, "+6443"},
	} {
		// Valid values first, each time, so that "nothing injected" is this value's doing.
		if err := testenv.Apply(ctx, te.Config, testenv.PolicyTwin(t, suiteHost, suitePort), false); err != nil {
			t.Fatal(err)
		}
		waitProbe(t, ns, func(env []corev1.EnvVar, _ bool) bool { return len(env) == 2 }, "the twin with valid values")
		if err := testenv.Apply(ctx, te.Config, testenv.PolicyTwin(t, bad.host, bad.port), false); err != nil {
			t.Fatal(err)
		}
		waitProbe(t, ns, func(env []corev1.EnvVar, _ bool) bool { return len(env) == 0 }, fmt.Sprintf("the twin injecting host %q port %q", bad.host, bad.port))
		opts := servicehost.Options{ServiceHost: bad.host, ServicePort: bad.port, RemediationRate: 1}
		if opts.Validate() == nil {
			t.Errorf("svcguard accepts host %q port %q, which its twin refuses", bad.host, bad.port)
		}
	}
}
