package main

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/svcguard/svcguard/pkg/benchtest"
	"github.com/svcguard/svcguard/pkg/component"
	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/podwatch"
	"github.com/svcguard/svcguard/webhook/nodeport"
	"github.com/svcguard/svcguard/webhook/servicehost"
	"github.com/svcguard/svcguard/webhook/servicepath"
)

// buildAll builds every webhook as main does, on a plain Pod watch that
// tests and benchmarks feed by hand.
func buildAll(t testing.TB) *podwatch.Watch {
	t.Helper()
	pods := podwatch.NewStore()
	deps := component.Dependencies{
		Client: fake.NewClientset(),
		Start:  func(manager.Runnable) error { return nil },
		Pods:   pods,
	}
	injection := servicehost.NewOptions()
	injection.ServiceHost = "203.0.113.10"
	_, err := servicehost.Build(injection, deps)
	require.NoError(t, err)
	_, err = nodeport.Build(nodeport.NewOptions(), deps)
	require.NoError(t, err)
	_, err = servicepath.Build(servicepath.NewOptions(), injection.ServiceHost, deps)
	require.NoError(t, err)
	return pods
}

func TestEveryWebhookThatReadsPodsReadsTheOneSharedWatch(t *testing.T) {
	pods := buildAll(t)
	require.Equal(t, []string{servicehost.Name + "-audit", nodeport.Name, servicepath.Name}, pods.Parts(),
		"the missed-injection audit, the node-port guard and the service-path guard each register a part of the replica's one Pod watch")
}

// BenchmarkLeaderPodMemory is what the leader keeps per Pod in the cluster,
// with every webhook built as main builds it: 100k fixtures.ClusterPod Pods
// through the one shared watch and every part's projection and indexes.
func BenchmarkLeaderPodMemory(b *testing.B) {
	const n = 100_000
	for b.Loop() {
		before := benchtest.HeapAfterGC()
		pods := buildAll(b)
		for i := range n {
			if err := pods.Add(fixtures.ClusterPod(i)); err != nil {
				b.Fatal(err)
			}
		}
		held := benchtest.HeapAfterGC() - before
		b.ReportMetric(float64(held)/n, "B/pod")
		b.ReportMetric(float64(held)/(1<<20), "MiB-total")
		runtime.KeepAlive(pods)
	}
}
