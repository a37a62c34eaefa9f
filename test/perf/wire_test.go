package perf

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/svcguard/svcguard/hack/loadgen"
	"github.com/svcguard/svcguard/pkg/benchtest"
)

// target is one webhook under load.
type target struct {
	name  string
	url   string
	pid   func() int
	pprof string // host:port of its /debug/pprof
}

func targets() []target {
	return []target{
		{"noop", "https://" + noopAddr + "/webhooks/service-host", func() int { return noop.Process.Pid }, noopPprofAddr},
		{"svcguard", "https://" + svcguardAddr + "/webhooks/service-host", svcguard.PID, pprofAddr},
	}
}

// saturationTargets are targets and, at saturation only, the no-op webhook
// reading reviews in one pass as svcguard does (pkg/review): the ceiling of
// svcguard's own stack, where noop is the ceiling of controller-runtime's.
func saturationTargets() []target {
	return append(targets(), target{"noop-one-pass", "https://" + onePassAddr + "/webhooks/service-host",
		func() int { return onePass.Process.Pid }, onePassPprofAddr})
}

// wireRun sends one load to t and reports its figures on b.
func wireRun(b *testing.B, t target, body []byte, conns int, rate float64, d time.Duration) {
	b.Helper()
	before, err := benchtest.CPUSeconds(t.pid())
	if err != nil {
		b.Fatal(err)
	}
	res, err := loadgen.Run(context.Background(), loadgen.Config{URL: t.url, Body: body, TLS: env.TLSConfig(), Conns: conns, Rate: rate, Duration: d})
	if err != nil {
		b.Fatal(err)
	}
	after, err := benchtest.CPUSeconds(t.pid())
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
		for _, t := range saturationTargets() {
			b.Run(fmt.Sprintf("saturation/%s/round=%d", t.name, round), func(b *testing.B) {
				if round == 2 {
					// Where the time goes at saturation: a CPU profile of each target's
					// second round, for `go tool pprof -top`.
					done := profile(b, t.pprof, 4*time.Second, fmt.Sprintf(profilePath, t.name))
					defer func() { <-done }()
				}
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

// profilePath is where BenchmarkWire leaves each target's CPU profile at
// saturation (bin/, next to the benchmarks' output), by target name.
const profilePath = "../../bin/%s-saturation.cpu.pprof"

// profile fetches a CPU profile over d from the /debug/pprof at addr,
// in the background, into path; the channel closes when it is written.
func profile(b *testing.B, addr string, d time.Duration, path string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(d.Seconds())))
		if err != nil {
			b.Errorf("profiling svcguard: %v", err)
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Errorf("profiling svcguard: HTTP %d, %v", resp.StatusCode, err)
			return
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Errorf("writing the profile: %v", err)
		}
	}()
	return done
}
