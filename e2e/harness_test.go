package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

// The webhook entries of the manifests' configurations: the API server labels
// its counters with them.
const (
	serviceHostWebhook = "service-host.svcguard.io"
	nodePortWebhook    = "node-port-guard.svcguard.io"
)

// webhookCalls are the API server's own counters for one webhook.
type webhookCalls struct {
	// Requests counts calls, FailOpen calls that failed and were ignored
	// (failurePolicy Ignore), Rejections calls that made a request fail.
	Requests, FailOpen, Rejections float64
}

// countCalls reads the API server's counters for the webhook name.
func countCalls(t testing.TB, name string) webhookCalls {
	t.Helper()
	text, err := env.APIServerMetrics(context.Background())
	require.NoError(t, err, "reading kube-apiserver's /metrics")
	var c webhookCalls
	c.Requests, _ = testenv.SumSamples(t, text, "apiserver_admission_webhook_request_total", "name", name)
	c.FailOpen, _ = testenv.SumSamples(t, text, "apiserver_admission_webhook_fail_open_count", "name", name)
	c.Rejections, _ = testenv.SumSamples(t, text, "apiserver_admission_webhook_rejection_count", "name", name)
	return c
}

func (c webhookCalls) since(before webhookCalls) webhookCalls {
	return webhookCalls{c.Requests - before.Requests, c.FailOpen - before.FailOpen, c.Rejections - before.Rejections}
}

// unthrottled is a clientset without client-side rate limiting, for load.
func unthrottled(t testing.TB) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	cs, err := kubernetes.NewForConfig(cfg)
	require.NoError(t, err)
	return cs
}

// podLoad creates Pods in a namespace as a client in the cluster does, at
// a steady rate, until stopped or its limit is reached.
type podLoad struct {
	created, failed atomic.Int64
	mu              sync.Mutex
	latencies       []time.Duration
	errs            []string
	stop            chan struct{}
	done            sync.WaitGroup
}

// startPodLoad creates up to limit Pods (one container) in ns, perSecond a
// second, from workers goroutines.
func startPodLoad(t testing.TB, ns string, perSecond, workers, limit int) *podLoad {
	t.Helper()
	cs := unthrottled(t)
	l := &podLoad{stop: make(chan struct{})}
	ticks := make(chan int)
	l.done.Add(1)
	go func() {
		defer l.done.Done()
		defer close(ticks)
		tick := time.NewTicker(time.Second / time.Duration(perSecond))
		defer tick.Stop()
		for i := range limit {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			select {
			case ticks <- i:
			case <-l.stop:
				return
			}
		}
	}()
	for range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for i := range ticks {
				pod := fixtures.Pod(ns, fmt.Sprintf("load-%05d", i), fixtures.Container("app", "nginx"))
				start := time.Now()
				_, err := cs.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
				took := time.Since(start)
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					if len(l.errs) < 5 {
						l.errs = append(l.errs, err.Error())
					}
				} else {
					l.created.Add(1)
					l.latencies = append(l.latencies, took)
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.Stop)
	return l
}

// Stop ends the load and waits for the requests in flight.
func (l *podLoad) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.done.Wait()
}

// quantile returns the q-quantile of the latencies of creates that
// succeeded from the from-th on.
func (l *podLoad) quantile(from int, q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from >= len(l.latencies) {
		return 0
	}
	s := slices.Clone(l.latencies[from:])
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// mark returns how many creates succeeded so far, to measure from there.
func (l *podLoad) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.latencies)
}

// errors returns the first client errors.
func (l *podLoad) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// missingPods counts the Pods stored in ns without KUBERNETES_SERVICE_HOST in
// every container, and all Pods.
func missingPods(t testing.TB, ns string) (missing, total int) {
	t.Helper()
	var pods corev1.PodList
	require.NoError(t, env.Client.List(context.Background(), &pods, client.InNamespace(ns)))
	for i := range pods.Items {
		if !injected(&pods.Items[i]) {
			missing++
		}
	}
	return missing, len(pods.Items)
}

// injected reports whether every container of p sets both variables.
func injected(p *corev1.Pod) bool {
	for _, env := range fixtures.Envs(p) {
		var host, port bool
		for _, e := range env {
			host = host || e.Name == servicehost.HostVar && e.Value == serviceHost
			port = port || e.Name == servicehost.PortVar && e.Value == servicePort
		}
		if !host || !port {
			return false
		}
	}
	return true
}

// untouched reports whether no container of p sets either variable.
func untouched(p *corev1.Pod) bool {
	for _, env := range fixtures.Envs(p) {
		for _, e := range env {
			if e.Name == servicehost.HostVar || e.Name == servicehost.PortVar {
				return false
			}
		}
	}
	return true
}

// row is one line of the scenario table.
type row struct {
	scenario, figure, goal string
	pass                   bool
	// test is the test that recorded it.
	test string
}

var (
	reportMu sync.Mutex
	report   []row
)

// begin opens a scenario's row: a test that ends without recording its
// figure gets a FAIL row, and a row recorded by a test that then failed is
// turned into FAIL, so the table never looks better than the run.
func begin(t *testing.T, scenario string) {
	t.Cleanup(func() {
		reportMu.Lock()
		defer reportMu.Unlock()
		for i := range report {
			if report[i].test == t.Name() {
				report[i].pass = report[i].pass && !t.Failed()
				return
			}
		}
		report = append(report, row{scenario: scenario, figure: "did not finish (see the test's log)", goal: "-", test: t.Name()})
	})
}

// record adds a scenario's figure to the table the suite prints at the end,
// and logs it. pass is whether the goal was met; the test asserts it too.
func record(t testing.TB, scenario, figure, goal string, pass bool) {
	t.Helper()
	t.Logf("%s: %s (goal: %s)", scenario, figure, goal)
	reportMu.Lock()
	defer reportMu.Unlock()
	report = append(report, row{scenario, figure, goal, pass, t.Name()})
}

// restoreOnFailure puts the fleet back (three replicas with the manifests'
// settings, trusted by the current CA, no endpoint lag) when t fails, so
// that one failed scenario does not fail the ones after it.
func restoreOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx := context.Background()
		fleet.StandIn.SetEndpointLag(0)
		fleet.SetServing(ca.ServingFiles)
		env.CAData = ca.PEM
		if err := env.SetCABundle(ctx, ca.PEM); err != nil {
			t.Logf("restoring the caBundle: %v", err)
		}
		for _, r := range fleet.Replicas() {
			fleet.Kill(r)
		}
		if err := fleet.StartN(ctx, 3, fleetFlags...); err != nil {
			t.Logf("restoring the fleet: %v", err)
		}
	})
}

// writeReport prints the table as Markdown to w and, when $E2E_REPORT names
// a file, writes it there too (`make e2e` prints that file).
func writeReport(w io.Writer) error {
	reportMu.Lock()
	defer reportMu.Unlock()
	if len(report) == 0 {
		return nil
	}
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "svcguard end-to-end scenarios, %s, on %s (%d CPUs)\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU())
	b.WriteString("| Scenario | Figure | Goal | Result |\n|---|---|---|---|\n")
	for _, r := range report {
		result := "pass"
		if !r.pass {
			result = "**FAIL**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.scenario, r.figure, r.goal, result)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	if path := os.Getenv("E2E_REPORT"); path != "" {
		return os.WriteFile(path, []byte(b.String()), 0o600)
	}
	return nil
}
