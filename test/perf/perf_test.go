// Package perf holds the benchmarks of docs/performance.md that need
// processes (`make bench` runs them, hack/perfreport turns their output
// into the page's tables and chart):
//   - over the wire: hack/loadgen against the svcguard binary and against
//     hack/noop, a controller-runtime webhook that allows everything
//     without decoding (the ceiling of the stack), alternated A B A B;
//   - through the API server: Pod creates and Service updates with no
//     admission, with svcguard's shipped webhook configurations, and with
//     admission policies that do the same in CEL.
//
// No test here asserts a time: the figures are reported, as ratios to a
// baseline measured in the same run.
package perf

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/testenv"
)

var (
	env *testenv.Environment
	// svcguard and noop are the two webhooks under load; onePass is noop
	// reading reviews as svcguard does (pkg/review), at saturation only.
	svcguard      *testenv.Process
	noop, onePass *exec.Cmd
	// svcguardAddr and noopAddr are where they listen; pprofAddr serves
	// svcguard's /debug/pprof.
	svcguardAddr, noopAddr, pprofAddr, noopPprofAddr, onePassAddr, onePassPprofAddr string
)

// serviceHost is what svcguard injects.
const serviceHost = "10.0.0.1"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Only benchmarks live here: a plain `go test` starts nothing.
	if !benchmarking() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "svcguard-perf-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary, err := testenv.BuildBinary(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	noopBinary := filepath.Join(dir, "noop")
	build := exec.Command("go", "build", "-o", noopBinary, "./hack/noop")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hack/noop:", err)
		return 1
	}
	if env, err = testenv.Start(testenv.Options{NoWebhooks: true}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()
	ctx := context.Background()
	if svcguardAddr, err = testenv.FreeAddress(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The manifests' Deployment sets GOMEMLIMIT and max-in-flight-requests; the
	// load here stays far below both, so the binary's defaults are what is measured.
	if pprofAddr, err = testenv.FreeAddress(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	svcguard, err = env.StartBinary(ctx, binary, nil, "--service-host="+serviceHost, "--service-port=6443",
		"--webhook-bind-address="+svcguardAddr, "--readiness-check-interval=10s", "--pprof-bind-address="+pprofAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer svcguard.Kill()
	for _, n := range []struct {
		cmd         **exec.Cmd
		addr, pprof *string
		args        []string
	}{{&noop, &noopAddr, &noopPprofAddr, nil}, {&onePass, &onePassAddr, &onePassPprofAddr, []string{"--one-pass"}}} {
		if *n.addr, err = testenv.FreeAddress(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if *n.pprof, err = testenv.FreeAddress(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cmd := exec.Command(noopBinary, append([]string{"--bind=" + *n.addr, "--cert-dir=" + env.CertDir, "--pprof-bind-address=" + *n.pprof}, n.args...)...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "starting hack/noop:", err)
			return 1
		}
		*n.cmd = cmd
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		wait, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := env.WaitTLS(wait, *n.addr); err != nil {
			fmt.Fprintln(os.Stderr, "hack/noop never served:", err)
			return 1
		}
	}
	return m.Run()
}

// benchmarking tells whether -test.bench selects any benchmark.
func benchmarking() bool {
	for _, a := range os.Args[1:] {
		if v, ok := strings.CutPrefix(a, "-test.bench="); ok && v != "" {
			return true
		}
	}
	return false
}

// podReview is an AdmissionReview of a Pod CREATE with n containers, as the
// API server sends it.
func podReview(n int) ([]byte, error) {
	pod := fixtures.TypicalPod(n)
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, err
	}
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "perf", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: pod.Namespace, Name: pod.Name, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw},
		},
	})
}

// settle waits a moment between runs, so that one run's garbage collection
// and connection teardown do not land in the next.
func settle() {
	time.Sleep(time.Second)
}
