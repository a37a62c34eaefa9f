package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/svcguard/svcguard/pkg/admissiontest"
	"github.com/svcguard/svcguard/pkg/certtest"
	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/readiness"
	"github.com/svcguard/svcguard/pkg/server"
	"github.com/svcguard/svcguard/pkg/testenv"
)

// waitReadiness polls /readyz?verbose until its status is wantReady and its
// body holds every text of want.
func waitReadiness(t *testing.T, wantReady bool, want ...string) {
	t.Helper()
	var body string
	ok := assert.Eventually(t, func() bool {
		var ready bool
		ready, body = testenv.Ready(suite.ProbeURL)
		if ready != wantReady {
			return false
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				return false
			}
		}
		return true
	}, 20*time.Second, 100*time.Millisecond, "want ready=%v with %q", wantReady, want)
	if !ok {
		t.Fatalf("last /readyz?verbose answer:\n%s", body)
	}
}

// editConfigurations changes every registered webhook entry of both
// configurations, retrying on conflicts.
func editConfigurations(t *testing.T, mutating func(*admissionregistrationv1.MutatingWebhook), validating func(*admissionregistrationv1.ValidatingWebhook)) {
	t.Helper()
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	suite.Env.Edit(t, client.ObjectKey{Name: "svcguard"}, &mwc, func() {
		for i := range mwc.Webhooks {
			mutating(&mwc.Webhooks[i])
		}
	})
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	suite.Env.Edit(t, client.ObjectKey{Name: "svcguard"}, &vwc, func() {
		for i := range vwc.Webhooks {
			validating(&vwc.Webhooks[i])
		}
	})
}

func setPolicy(t *testing.T, p admissionregistrationv1.FailurePolicyType) {
	editConfigurations(t,
		func(w *admissionregistrationv1.MutatingWebhook) { w.FailurePolicy = ptr.To(p) },
		func(w *admissionregistrationv1.ValidatingWebhook) { w.FailurePolicy = ptr.To(p) })
}

func setCABundle(t *testing.T, bundle []byte) {
	editConfigurations(t,
		func(w *admissionregistrationv1.MutatingWebhook) { w.ClientConfig.CABundle = bundle },
		func(w *admissionregistrationv1.ValidatingWebhook) { w.ClientConfig.CABundle = bundle })
}

func TestEnvtestReadinessFollowsTheLiveFailurePolicy(t *testing.T) {
	waitReadiness(t, true, "readyz check passed\n")
	t.Cleanup(func() {
		setPolicy(t, admissionregistrationv1.Ignore)
		cachesSynced.Store(true)
		waitReadiness(t, true, "readyz check passed\n")
	})
	cachesSynced.Store(false)

	waitReadiness(t, true, "(failurePolicy Ignore); node-port-guard, service-path-guard degrade (failurePolicy Ignore)",
		"readyz check passed (degraded: node-port-guard, service-path-guard)")

	setPolicy(t, admissionregistrationv1.Fail)
	waitReadiness(t, false, "[-]caches failing", "service-path-guard (failurePolicy Fail); holds readiness back",
		"node-port-guard, service-path-guard run under failurePolicy Fail")

	setPolicy(t, admissionregistrationv1.Ignore)
	waitReadiness(t, true, "readyz check passed (degraded: node-port-guard, service-path-guard)")

	cachesSynced.Store(true)
	waitReadiness(t, true, "[+]caches passing", "readyz check passed\n")
}

// TestEnvtestAHandlerThatFailsEveryRequestMakesTheReplicaUnready breaks the
// webhooks' handlers: the self-test runs the handlers' real code, so the
// serving check fails with the handler's own error, and recovers with it.
func TestEnvtestAHandlerThatFailsEveryRequestMakesTheReplicaUnready(t *testing.T) {
	waitReadiness(t, true, "[+]serving passing")
	handlerBroken.Store(true)
	t.Cleanup(func() { handlerBroken.Store(false) })
	waitReadiness(t, false, "[-]serving failing", "was answered with an error, HTTP code 500: rules failed on Pod self-test")

	handlerBroken.Store(false)
	waitReadiness(t, true, "[+]serving passing")
}

func TestEnvtestWrongCABundleMakesTheReplicaUnready(t *testing.T) {
	stranger := certtest.NewAuthority(t)
	t.Cleanup(func() {
		setCABundle(t, suite.Env.CAData)
		waitReadiness(t, true, "[+]ca-bundle passing")
	})

	setCABundle(t, stranger.PEM)
	waitReadiness(t, false, "[-]ca-bundle failing", "does not verify the serving certificate for 127.0.0.1", "certificate signed by unknown authority")
}

func TestEnvtestRotatedCertificateIsServedAndReadinessStaysGreen(t *testing.T) {
	waitReadiness(t, true, "[+]ca-bundle passing")
	next := certtest.NewAuthority(t)
	certFile, keyFile := filepath.Join(suite.Env.CertDir, server.CertFile), filepath.Join(suite.Env.CertDir, server.KeyFile)
	oldCert, err := os.ReadFile(certFile)
	require.NoError(t, err)
	oldKey, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, os.WriteFile(keyFile, oldKey, 0o600))
		require.NoError(t, os.WriteFile(certFile, oldCert, 0o600))
		setCABundle(t, suite.Env.CAData)
		waitReadiness(t, true, "[+]ca-bundle passing", "[+]tls passing")
	})

	// As cert-manager rolls a CA: the bundle trusts old and new first, then
	// the serving certificate changes.
	setCABundle(t, append(append([]byte{}, suite.Env.CAData...), next.PEM...))
	waitReadiness(t, true, "[+]ca-bundle passing")
	rotated := next.IssueFiles(t, suite.Env.CertDir)

	deadline := time.Now().Add(30 * time.Second)
	for {
		ready, body := testenv.Ready(suite.ProbeURL)
		require.True(t, ready, "readiness must stay green through the rotation:\n%s", body)
		served, err := testenv.ServedSerial(suite.Env.WebhookBindAddress)
		require.NoError(t, err)
		if served.Cmp(rotated.Leaf.SerialNumber) == 0 && strings.Contains(body, "serial "+rotated.Leaf.SerialNumber.String()) {
			break
		}
		require.True(t, time.Now().Before(deadline), "the rotated certificate (serial %s) was not served and checked within 30s; serving %s:\n%s",
			rotated.Leaf.SerialNumber, served, body)
		time.Sleep(100 * time.Millisecond)
	}
	waitReadiness(t, true, "[+]tls passing", "[+]serving passing", "[+]ca-bundle passing")
}

// replica is one more svcguard server in this process, on its own address.
type replica struct {
	name     string
	srv      *server.Server
	url      string
	leading  atomic.Bool // set by its leader-only task while it runs
	stopping atomic.Bool

	cancel   context.CancelFunc
	done     <-chan error
	stopOnce sync.Once
	stopErr  error
}

// stop shuts the replica down (once) and returns its exit error.
func (r *replica) stop() error {
	r.stopOnce.Do(func() {
		r.stopping.Store(true)
		r.cancel()
		r.stopErr = <-r.done
	})
	return r.stopErr
}

func startReplica(t *testing.T, name string, lease func(*options.Server)) *replica {
	t.Helper()
	opts, err := suite.Env.ServerOptions()
	require.NoError(t, err)
	opts.WebhookBindAddress, err = testenv.FreeAddress()
	require.NoError(t, err)
	lease(opts)
	r := &replica{name: name, url: "https://" + opts.WebhookBindAddress + "/webhooks/service-host"}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done, err = suite.Env.Serve(ctx, opts, func(s *server.Server) error {
		r.srv = s
		s.AddLeaderTask(manager.RunnableFunc(func(ctx context.Context) error {
			r.leading.Store(true)
			<-ctx.Done()
			r.leading.Store(false)
			return nil
		}))
		return registerStandIns(s)
	})
	require.NoError(t, err, "replica %s must start", name)
	t.Cleanup(func() { _ = r.stop() })
	return r
}

func leaders(rs ...*replica) []string {
	var out []string
	for _, r := range rs {
		if r.srv.Leading() && r.leading.Load() {
			out = append(out, r.name)
		}
	}
	return out
}

// TestEnvtestTwoReplicasShareALease: exactly one of two replicas leads;
// stopped, it hands the Lease over, and the other leads within the renew
// deadline (well before the lease would expire); both answer admission
// requests throughout, leader or not.
func TestEnvtestTwoReplicasShareALease(t *testing.T) {
	const leaseDuration, renewDeadline = 30 * time.Second, 20 * time.Second
	lease := func(o *options.Server) {
		o.LeaderElect = true
		o.LeaderElectionNamespace, o.LeaderElectionID = "default", "svcguard-two-replicas"
		o.LeaderElectionLeaseDuration, o.LeaderElectionRenewDeadline, o.LeaderElectionRetryPeriod = leaseDuration, renewDeadline, 500*time.Millisecond
	}
	a, b := startReplica(t, "a", lease), startReplica(t, "b", lease)

	// Both answer admission requests, all along, until one is stopped.
	review := admissiontest.PodCreate().Build(t)
	client := suite.Env.WebhookClient()
	var mu sync.Mutex
	var failures []string
	stopSending := make(chan struct{})
	var sending sync.WaitGroup
	for _, r := range []*replica{a, b} {
		sending.Go(func() {
			for {
				select {
				case <-stopSending:
					return
				case <-time.After(20 * time.Millisecond):
				}
				sent := time.Now()
				if _, err := readiness.PostReview(context.Background(), client, r.url, &review.AdmissionRequest, nil); err != nil {
					if r.stopping.Load() {
						continue // a replica that was stopped no longer answers: expected
					}
					mu.Lock()
					failures = append(failures, fmt.Sprintf("replica %s at %s: %v", r.name, sent.Format(time.StampMilli), err))
					mu.Unlock()
				}
			}
		})
	}

	require.Eventually(t, func() bool { return len(leaders(a, b)) == 1 }, renewDeadline, 100*time.Millisecond, "one replica must lead")
	first := leaders(a, b)[0]
	for range 20 { // a few retry periods: never two leaders
		require.Len(t, leaders(a, b), 1, "exactly one replica leads")
		time.Sleep(100 * time.Millisecond)
	}
	old, survivor := a, b
	if first == "b" {
		old, survivor = b, a
	}

	now := time.Now()
	require.NoError(t, old.stop(), "the leader stops cleanly")
	require.Eventually(t, func() bool { return survivor.srv.Leading() && survivor.leading.Load() }, renewDeadline, 100*time.Millisecond,
		"replica %s must take the Lease over within the renew deadline (%s; the lease lasts %s, so only a released Lease allows that)",
		survivor.name, renewDeadline, leaseDuration)
	t.Logf("replica %s led; replica %s took over %s after it stopped", first, survivor.name, time.Since(now).Round(time.Millisecond))

	time.Sleep(500 * time.Millisecond) // the new leader keeps answering too
	close(stopSending)
	sending.Wait()
	assert.Empty(t, failures, "every admission request to a running replica must be answered")
}

// TestEnvtestShippedRBACLetsReadinessReadItsConfigurations proves, against
// the API server's RBAC, that manifests/base/rbac.yaml's resourceNames rule lets
// readiness list and watch the two configurations by name, and that
// without it readiness assumes Fail and says why.
func TestEnvtestShippedRBACLetsReadinessReadItsConfigurations(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lookup := func(cfg *rest.Config) func() readiness.Registration {
		cs, err := kubernetes.NewForConfig(cfg)
		require.NoError(t, err)
		configs := readiness.NewConfigurations(cs, "svcguard", "svcguard")
		go func() { _ = configs.Start(ctx) }()
		return func() readiness.Registration { return configs.Lookup("/webhooks/service-host") }
	}
	nothing := suite.Env.UserConfig(t, "svcguard-denied")
	granted, denied := lookup(suite.Env.ShippedRBACConfig(t, "svcguard-granted", testenv.DefaultOverlay, "svcguard")), lookup(nothing)

	require.Eventually(t, func() bool { r := granted(); return r.Known && r.Registered }, 20*time.Second, 100*time.Millisecond,
		"with the shipped ClusterRole the configurations are read: %+v", granted())
	assert.Equal(t, admissionregistrationv1.Ignore, granted().Policy, "the live policy of the shipped configuration")
	require.Eventually(t, func() bool { return strings.Contains(denied().Note, "forbidden") }, 20*time.Second, 100*time.Millisecond,
		"without it the note says why: %+v", denied())
	assert.False(t, denied().Known)
	assert.Equal(t, admissionregistrationv1.Fail, denied().Policy, "an unreadable configuration is assumed Fail")
}
