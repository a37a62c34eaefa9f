package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcguard/svcguard/pkg/benchtest"
	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/testenv"
)

// TestBinaryWatchesEveryPodOnce: the node-port guard, the service-path guard
// and the missed-injection audit all read every Pod; a replica that leads,
// with all of them on, opens one Pod watch on the API server, not one each.
func TestBinaryWatchesEveryPodOnce(t *testing.T) {
	ctx := context.Background()
	before := steadyPodWatches(t, ctx)
	addr, err := testenv.FreeAddress()
	require.NoError(t, err)
	p, err := env.StartBinary(ctx, binary, nil, "--service-host="+serviceHost, "--leader-elect=false",
		"--webhook-bind-address="+addr, "--shutdown-drain=0s")
	require.NoError(t, err)
	defer p.Kill()
	// The audits start once the replica leads, which it does at once without an election.
	require.Eventually(t, func() bool {
		text, err := p.Metrics()
		return err == nil && strings.Contains(text, "\nsvcguard_leader 1\n")
	}, 30*time.Second, 200*time.Millisecond, "the replica leads")
	assert.Equal(t, 1.0, steadyPodWatches(t, ctx)-before, "Pod watches the leading replica holds on the API server")
	_, err = p.Terminate(30 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0.0, steadyPodWatches(t, ctx)-before, "and none once it stopped")
}

// podWatches is how many Pod watches the API server serves now.
func podWatches(t testing.TB, ctx context.Context) float64 {
	t.Helper()
	text, err := env.APIServerMetrics(ctx)
	require.NoError(t, err)
	n, _ := testenv.SumSamples(t, text, "apiserver_longrunning_requests", "resource", "pods", "verb", "WATCH")
	return n
}

// steadyPodWatches is podWatches once it read the same three times in a
// row: other clients' watches end and reopen (every few minutes), and a
// starting process opens its own within a second or two.
func steadyPodWatches(t testing.TB, ctx context.Context) float64 {
	t.Helper()
	last, same := -1.0, 0
	for range 100 {
		n := podWatches(t, ctx)
		if n == last {
			if same++; same == 2 {
				return n
			}
		} else {
			last, same = n, 0
		}
		time.Sleep(time.Second)
	}
	t.Fatal("the API server's count of Pod watches never held still")
	return 0
}

// clusterPods is how many Pods BenchmarkLeaderPerPod adds to the cluster:
// 10,000, or $SVCGUARD_BENCH_PODS (100,000 took 7 minutes on 2 cores).
func clusterPods(b *testing.B) int {
	if v := os.Getenv("SVCGUARD_BENCH_PODS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(b, err, "SVCGUARD_BENCH_PODS")
		require.Positive(b, n, "SVCGUARD_BENCH_PODS")
		return n
	}
	return 10_000
}

// BenchmarkLeaderPerPod is what a leading replica and the API server pay
// per Pod in the cluster. It starts a replica that leads (every webhook
// and audit on) before and after clusterPods fixtures.ClusterPod Pods are
// created, and reports:
//   - heap-B/pod and rss-B/pod: the growth of the replica's live heap
//     (after a forced collection) and of its resident memory, per Pod;
//   - idle-rss-MiB and rss-MiB: its resident memory before and after;
//   - pod-watches: the Pod watches the replica opened on the API server;
//   - apiserver-cpu-s and sent-MiB: the API server's CPU time and the Pod
//     bytes it sent (lists and watch events) while the replica synced.
func BenchmarkLeaderPerPod(b *testing.B) {
	ctx := context.Background()
	pods := clusterPods(b)
	for b.Loop() {
		before := startLeader(b, ctx)
		namespaces := createClusterPods(b, ctx, pods)
		after := startLeader(b, ctx)
		b.ReportMetric((after.heap-before.heap)/float64(pods), "heap-B/pod")
		b.ReportMetric((after.rss-before.rss)/float64(pods), "rss-B/pod")
		b.ReportMetric(before.rss/(1<<20), "idle-rss-MiB")
		b.ReportMetric(after.rss/(1<<20), "rss-MiB")
		b.ReportMetric(after.watches, "pod-watches")
		b.ReportMetric(after.apiServerCPU, "apiserver-cpu-s")
		b.ReportMetric(after.sent/(1<<20), "sent-MiB")
		for _, ns := range namespaces {
			require.NoError(b, env.Client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		}
	}
}

// leaderCost is what one replica's start cost, measured once it synced.
type leaderCost struct {
	heap, rss, watches, apiServerCPU, sent float64
}

// startLeader starts a replica that leads with every webhook on, waits
// until its memory settles (its caches synced), measures it and stops it.
func startLeader(b *testing.B, ctx context.Context) leaderCost {
	b.Helper()
	apiServer, err := env.APIServerPID()
	require.NoError(b, err)
	podMetrics := func() (watches, sent float64) {
		text, err := env.APIServerMetrics(ctx)
		require.NoError(b, err)
		events, _ := testenv.SumSamples(b, text, "apiserver_watch_events_sizes", "resource", "pods")
		lists, _ := testenv.SumSamples(b, text, "apiserver_response_sizes", "resource", "pods", "verb", "LIST")
		return steadyPodWatches(b, ctx), events + lists
	}
	watches0, sent0 := podMetrics()
	cpu0, err := benchtest.CPUSeconds(apiServer)
	require.NoError(b, err)

	addr, err := testenv.FreeAddress()
	require.NoError(b, err)
	pprof, err := testenv.FreeAddress()
	require.NoError(b, err)
	p, err := env.StartBinary(ctx, binary, nil, "--service-host="+serviceHost, "--leader-elect=false",
		"--webhook-bind-address="+addr, "--pprof-bind-address="+pprof)
	require.NoError(b, err)
	defer p.Kill()
	heap := settledHeap(b, "http://"+pprof)
	cpu1, err := benchtest.CPUSeconds(apiServer)
	require.NoError(b, err)
	watches1, sent1 := podMetrics()
	rss, err := benchtest.RSS(p.PID())
	require.NoError(b, err)
	return leaderCost{heap: heap, rss: float64(rss), watches: watches1 - watches0, apiServerCPU: cpu1 - cpu0, sent: sent1 - sent0}
}

// settledHeap forces collections in the process serving pprof until its
// live heap stops growing (its caches hold the cluster), and returns it.
func settledHeap(b *testing.B, pprof string) float64 {
	b.Helper()
	last := 0.0
	for range 60 {
		time.Sleep(time.Second)
		resp, err := http.Get(pprof + "/debug/pprof/heap?gc=1&debug=1")
		require.NoError(b, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(b, err)
		_, rest, ok := strings.Cut(string(body), "# HeapAlloc = ")
		require.True(b, ok, "no HeapAlloc in the heap profile")
		heap, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		require.NoError(b, err)
		if last > 0 && heap < last*1.01 {
			return heap
		}
		last = heap
	}
	b.Fatal("the replica's heap never settled in a minute")
	return 0
}

// createClusterPods creates n Pods (fixtures.ClusterPod, without owners,
// which the garbage collector would look for) and returns their namespaces.
func createClusterPods(b *testing.B, ctx context.Context, n int) []string {
	b.Helper()
	var namespaces []string
	for i := 0; i < n; i += 1000 {
		ns := fixtures.ClusterPod(i).Namespace
		require.NoError(b, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
		namespaces = append(namespaces, ns)
	}
	next := make(chan int)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				pod := fixtures.ClusterPod(i)
				pod.OwnerReferences = nil
				if err := env.Client.Create(ctx, pod); err != nil {
					select {
					case errs <- fmt.Errorf("creating Pod %d: %w", i, err):
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	return namespaces
}
