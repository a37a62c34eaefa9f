// Package e2e is svcguard's end-to-end suite (`make e2e`): a real control
// plane as processes (etcd, kube-apiserver, kube-controller-manager), and
// svcguard's Deployment played by three processes of the real binary, built
// from this tree, with the manifests' flags, behind a Service stand-in that
// routes by the manifests' readiness probe. The API server is the client:
// the registered webhook configurations, rendered from the manifests, send
// it to the stand-in. The scenarios (scenario_test.go, and 7 in
// badinput_test.go) put the faults of real clusters to it and print their
// figures in one table (harness_test.go);
// the other tests check what an operator sees: Pods come back injected,
// probes and metrics answer, the certificate reloads, bad settings fail in
// one line, SIGTERM stops cleanly, and `make demo` works.
package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/certtest"
	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/testenv"
)

const (
	serviceHost = "192.0.2.10"
	servicePort = "6443"
)

var (
	binary string
	env    *testenv.Environment
	// fleet is svcguard's Deployment: three replicas behind the Service
	// stand-in, with the manifests' flags and fleetFlags.
	fleet *testenv.Fleet
	// ca issues every serving certificate; the configurations trust it.
	ca *certtest.Authority
	// fleetLog holds every replica's output, shown when the suite fails.
	fleetLog testenv.SyncBuffer
)

// fleetFlags are what the suite adds to the manifests' flags: the address to
// inject, which every install sets (see the README's install section), and
// an audit pass every 5s rather than every minute, so that the scenarios
// wait seconds for what an audit finds.
var fleetFlags = []string{"--service-host=" + serviceHost, "--service-port=" + servicePort, "--audit-interval=5s"}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	dir, err := os.MkdirTemp("", "svcguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = testenv.BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// An interrupted run (Ctrl-C, a CI timeout's SIGTERM) stops every process it started, so a second run
	// right after it starts clean.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	stop, err := startCluster(signals)
	defer stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code = m.Run()
	if err := env.CheckAdmissionEvaluation(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if err := writeReport(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "writing the scenario table:", err)
		code = 1
	}
	// The replicas are killed by stop: a clean stop is the scenarios' and TestBinaryStopsCleanlyOnSIGTERM's to
	// prove, and three 15 s drains would only add time.
	if code != 0 {
		fmt.Fprintf(os.Stderr, "svcguard replicas' output:\n%s\n", fleetLog.String())
	}
	return code
}

// startCluster starts the control plane, kube-controller-manager and the
// fleet, and returns what stops them all (safe to call twice); a signal
// on signals stops them and exits, also while they start.
func startCluster(signals <-chan os.Signal) (func(), error) {
	var (
		once    sync.Once
		mu      sync.Mutex
		stopped []func() error
	)
	stop := func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			for i := len(stopped) - 1; i >= 0; i-- {
				if err := stopped[i](); err != nil {
					fmt.Fprintln(os.Stderr, "e2e: stopping:", err)
				}
			}
		})
	}
	onStop := func(f func() error) {
		mu.Lock()
		defer mu.Unlock()
		stopped = append(stopped, f)
	}
	go func() {
		sig := <-signals
		fmt.Fprintf(os.Stderr, "e2e: %s: stopping every process the suite started\n", sig)
		stop()
		os.Exit(1)
	}()
	ctx := context.Background()
	var err error
	if env, err = testenv.Start(testenv.Options{}); err != nil {
		return stop, err
	}
	onStop(env.Stop)
	kcm, err := env.StartControllerManager(ctx, nil)
	if err != nil {
		return stop, err
	}
	onStop(func() error { kcm.Kill(); return nil })
	if ca, err = certtest.Generate(time.Now().Add(24 * time.Hour)); err != nil {
		return stop, err
	}
	// The configurations trust the suite's CA, as cainjector makes them trust cert-manager's; replicas that tests
	// start on their own serve the environment's certificate, so it comes from this CA too.
	if err := env.SetCABundle(ctx, ca.PEM); err != nil {
		return stop, err
	}
	files, err := ca.ServingFiles()
	if err != nil {
		return stop, err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(env.CertDir, name), data, 0o600); err != nil {
			return stop, err
		}
	}
	env.CAData = ca.PEM
	fleet, err = env.StartFleet(ctx, testenv.FleetOptions{
		Binary: binary, Overlay: testenv.DefaultOverlay, Serving: ca.ServingFiles, Log: &fleetLog,
	}, 3, fleetFlags...)
	if err != nil {
		return stop, err
	}
	onStop(fleet.Close)
	return stop, nil
}

// createAppPod creates Pod app (one container, image nginx) in a new namespace
// and returns it as the API server stored it.
func createAppPod(t *testing.T) *corev1.Pod {
	t.Helper()
	pod := fixtures.Pod(env.Namespace(t, nil), "app", fixtures.Container("app", "nginx"))
	require.NoError(t, env.Client.Create(context.Background(), pod))
	return pod
}

func TestBinaryInjectsPodsCreatedThroughTheAPIServer(t *testing.T) {
	pod := createAppPod(t)
	assert.Equal(t, []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: serviceHost}, {Name: "KUBERNETES_SERVICE_PORT", Value: servicePort}},
		pod.Spec.Containers[0].Env)
}

func TestBinaryServesLivenessAndReadiness(t *testing.T) {
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(fleet.Replicas()[0].HealthURL + path)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s answered %s", path, body)
	}
}

func TestBinaryExportsAdmissionMetrics(t *testing.T) {
	createAppPod(t)
	// The Pod went to one replica, whichever the Service picked: read them all.
	var text string
	for _, r := range fleet.Replicas() {
		m, err := r.Metrics()
		require.NoError(t, err)
		if strings.Contains(m, `svcguard_admission_requests_total{decision="patched",operation="CREATE",webhook="service-host"}`) {
			text = m
		}
	}
	for _, want := range []string{
		`svcguard_admission_requests_total{decision="patched",operation="CREATE",webhook="service-host"}`,
		`svcguard_admission_duration_seconds_bucket{webhook="service-host"`,
		`svcguard_injected_containers_total `,
		`controller_runtime_webhook_requests_total{code="200",webhook="/webhooks/service-host"}`,
	} {
		assert.Contains(t, text, want, "/metrics must export it")
	}
}

func TestBinaryReloadsRotatedCertificateWithoutRestart(t *testing.T) {
	certDir := t.TempDir()
	ca := certtest.NewAuthority(t)
	first := ca.IssueFiles(t, certDir)
	addr, err := testenv.FreeAddress()
	require.NoError(t, err)
	// A second replica on its own address and cert dir, so the shared one keeps serving the other tests. No
	// webhook configuration points at it, so it consults none (its caBundle check has nothing to verify).
	p, err := env.StartBinary(context.Background(), binary, nil, "--webhook-bind-address="+addr, "--cert-dir="+certDir,
		"--service-host="+serviceHost, "--mutating-webhook-configuration=", "--validating-webhook-configuration=", "--shutdown-drain=0s")
	require.NoError(t, err)
	defer func() { _, _ = p.Terminate(30 * time.Second) }()

	served, err := testenv.ServedSerial(addr)
	require.NoError(t, err)
	require.Equal(t, first.Leaf.SerialNumber, served, "the first certificate must be served")

	second := ca.IssueFiles(t, certDir)
	require.Eventually(t, func() bool {
		served, err := testenv.ServedSerial(addr)
		return err == nil && served.Cmp(second.Leaf.SerialNumber) == 0
	}, 20*time.Second, 100*time.Millisecond, "the rotated certificate (serial %s) must be served without restart", second.Leaf.SerialNumber)
	ok, body := p.Ready()
	assert.True(t, ok, "still ready after rotation: %s", body)
}

func TestBinaryStopsCleanlyOnSIGTERM(t *testing.T) {
	addr, err := testenv.FreeAddress()
	require.NoError(t, err)
	p, err := env.StartBinary(context.Background(), binary, nil, "--webhook-bind-address="+addr, "--shutdown-drain=1s")
	require.NoError(t, err)
	code, err := p.Terminate(30 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code, "exit code after SIGTERM; output:\n%s", p.Output())
	assert.Contains(t, p.Output(), "stopped cleanly")
}

func TestBinaryRejectsBadSettingsWithOneLine(t *testing.T) {
	badConfig := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(badConfig, []byte("service-hots: 10.0.0.1\n"), 0o600))
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--service-hots=1.2.3.4"}, "flag provided but not defined: -service-hots"},
		{"bad port", []string{"--service-host=10.0.0.1", "--service-port=https"}, `--service-port="https" is not a port`},
		{"bad host", []string{"--service-host=not a host"}, "neither an IP address nor a DNS name"},
		{"unreadable config file", []string{"--config=/nonexistent.yaml"}, "cannot read config file"},
		{"unknown key in config file", []string{"--config=" + badConfig}, `unknown setting "service-hots"`},
		{"missing certificate", []string{"--cert-dir=/nonexistent", "--kubeconfig=" + env.Kubeconfig}, "cannot load the serving certificate from --cert-dir /nonexistent"},
		{"invalid certificate", []string{"--cert-dir=" + invalidCertDir(t), "--kubeconfig=" + env.Kubeconfig}, "cannot load the serving certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(binary, tc.args...).CombinedOutput()
			var exitErr *exec.ExitError
			require.ErrorAs(t, err, &exitErr, "svcguard %v must fail; output: %s", tc.args, out)
			assert.NotEqual(t, 0, exitErr.ExitCode())
			text := strings.TrimSpace(string(out))
			assert.Contains(t, text, tc.want)
			assert.Equal(t, 1, strings.Count(text, "\n")+1, "exactly one line expected, got:\n%s", text)
			assert.NotContains(t, text, "goroutine", "no stack trace")
		})
	}
}

func invalidCertDir(t *testing.T) string {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.crt"), []byte("not a certificate"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tls.key"), []byte("not a key"), 0o600))
	return dir
}

func TestBinaryPrintsVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").CombinedOutput()
	require.NoError(t, err)
	assert.Regexp(t, `^svcguard \S+ \(commit \S+, go1\.\d+`, string(out))
}

// TestDemoShowsAnInjectedPodAndStopsCleanlyOnCtrlC runs `make demo`'s program
// as a terminal runs a foreground job, in its own process group, checks it
// prints what the README promises, then presses Ctrl-C: SIGINT to the whole
// group. One signal must make one graceful stop: exit 0, no error line.
func TestDemoShowsAnInjectedPodAndStopsCleanlyOnCtrlC(t *testing.T) {
	root, err := testenv.RepoRoot()
	require.NoError(t, err)
	demo := filepath.Join(t.TempDir(), "demo")
	build := exec.Command("go", "build", "-o", demo, "./hack/demo")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "building hack/demo: %s", out)

	var stdout, stderr testenv.SyncBuffer
	cmd := exec.Command(demo, "--svcguard", binary)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a job of its own, as a shell makes it
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	require.Eventually(t, func() bool { return strings.Contains(stdout.String(), "Press Ctrl-C") }, 90*time.Second, 100*time.Millisecond,
		"the demo never got to waiting for Ctrl-C; stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
	for _, want := range []string{
		"container migrate  KUBERNETES_SERVICE_HOST=192.0.2.10",
		"container app      KUBERNETES_SERVICE_PORT=6443",
		"With no svcguard replica answering, the API server stored Pod demo/during-outage with these variables",
	} {
		assert.Contains(t, stdout.String(), want)
	}

	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT), "Ctrl-C: SIGINT to the demo's process group")
	select {
	case err = <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the demo did not stop within 60s of Ctrl-C; stdout:\n%s", &stdout)
	}
	assert.NoError(t, err, "the demo must exit 0 after one Ctrl-C; stderr:\n%s", &stderr)
	assert.Empty(t, stderr.String(), "no error line after Ctrl-C")
	outage := stdout.String()[strings.Index(stdout.String(), "during-outage"):]
	assert.Contains(t, outage, "container app      KUBERNETES_SERVICE_HOST=192.0.2.10", "the twin injects while svcguard is stopped")
	assert.Contains(t, stdout.String(), "Stopping svcguard (SIGTERM)")
	assert.Contains(t, stdout.String(), "Stopping the control plane and removing temporary files")
}

// TestBinaryLeadsThroughALeaseAndReleasesItOnSIGTERM runs a replica with
// leader election: it takes the Lease, runs the audits (their metrics
// appear), and gives the Lease up when it stops, so that another replica
// need not wait for it to expire.
func TestBinaryLeadsThroughALeaseAndReleasesItOnSIGTERM(t *testing.T) {
	addr, err := testenv.FreeAddress()
	require.NoError(t, err)
	const lease = "svcguard-e2e"
	p, err := env.StartBinary(context.Background(), binary, nil, "--webhook-bind-address="+addr, "--service-host="+serviceHost,
		"--leader-elect", "--leader-election-namespace=default", "--leader-election-id="+lease, "--shutdown-drain=0s")
	require.NoError(t, err)

	var text string
	require.Eventually(t, func() bool {
		text, err = p.Metrics()
		return err == nil && strings.Contains(text, "svcguard_leader 1")
	}, 30*time.Second, 200*time.Millisecond, "the only replica leads")
	require.Eventually(t, func() bool {
		text, _ = p.Metrics()
		return strings.Contains(text, "svcguard_pods_missing_service_host ") && strings.Contains(text, `svcguard_node_ports_incorrect{reason="reserved"}`)
	}, 30*time.Second, 200*time.Millisecond, "the leader runs both audits; /metrics:\n%s", text)

	var held coordinationv1.Lease
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: lease}, &held))
	require.NotEmpty(t, ptr.Deref(held.Spec.HolderIdentity, ""), "the Lease names its holder")

	code, err := p.Terminate(30 * time.Second)
	require.NoError(t, err)
	assert.Equal(t, 0, code, "output:\n%s", p.Output())
	require.NoError(t, env.Client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: lease}, &held))
	assert.Empty(t, ptr.Deref(held.Spec.HolderIdentity, ""), "the Lease is released on shutdown")
}
