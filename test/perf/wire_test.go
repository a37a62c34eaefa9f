package perf

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/svcguard/svcguard/hack/loadgen"
	"github.com/svcguard/svcguard/pkg/benchtest"
)

// target is one webhook under load.
type target struct {
	name string
	url  string
	pid  func() int
}

func targets() []target {
	return []target{
		{"noop", "https://" + noopAddr + "/webhooks/service-host", func() int { return noop.Process.Pid }},
		{"svcguard", "https://" + svcguardAddr + "/webhooks/service-host", svcguard.PID},
	}
}

// wireRun sends one load to t and reports its figures on b.
func wireRun(b *testing.B, t target, body []byte, conns int, rate float64, d time.Duration) {
	b.Helper()
	before, err := cpuSeconds(t.pid())
	if err != nil {
		b.Fatal(err)
	}
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: t.url, Body: body, TLS: env.TLSConfig(), Conns: conns, Rate: rate, Duration: d})
	if err != nil {
		b.Fatal(err)
	}
	after, err := cpuSeconds(t.pid())
	if err != nil {
		b.Fatal(err)
	}
	if res.Requests == 0 {
		b.Fatalf("%s answered no request (%d errors)", t.name, res.Errors)
	}
	peak, err := benchtest.PeakRSS(t.pid())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.Throughput(), "req/s")
	b.ReportMetric(ms(res.Quantile(0.5)), "p50-ms")
	b.ReportMetric(ms(res.Quantile(0.99)), "p99-ms")
	b.ReportMetric(ms(res.Quantile(0.999)), "p999-ms")
	b.ReportMetric(float64(res.Errors), "errors")
	b.ReportMetric((after-before)*1000/float64(res.Requests)*1000, "cpu-ms/1k-req")
	b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
}

func ms(d time.Duration) float64 {
	return float64(d) / float64(time.Millisecond)
}

// BenchmarkWire sends a 5-container Pod's AdmissionReview over 8 TLS
// keep-alive connections to svcguard's service-host webhook and to the
// no-op ceiling, alternating A B A B: at saturation (throughput), then at
// fixed rates (latency against offered load, the chart of
// docs/performance.md). Load generator and servers share the machine's
// cores, as they did in the figures the performance issue started from.
func BenchmarkWire(b *testing.B) {
	body, err := podReview(5)
	if err != nil {
		b.Fatal(err)
	}
	const conns = 8
	for round := 1; round <= 2; round++ {
		for _, t := range targets() {
			b.Run(fmt.Sprintf("saturation/%s/round=%d", t.name, round), func(b *testing.B) {
				wireRun(b, t, body, conns, 0, 5*time.Second)
			})
			settle()
		}
	}
	for _, rate := range []float64{500, 1000, 2000, 4000, 8000} {
		for round := 1; round <= 2; round++ {
			for _, t := range targets() {
				b.Run(fmt.Sprintf("rate=%.0f/%s/round=%d", rate, t.name, round), func(b *testing.B) {
					wireRun(b, t, body, conns, rate, 3*time.Second)
				})
				settle()
			}
		}
	}
}
