package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Process is the real svcguard binary running against an Environment.
type Process struct {
	// HealthURL and MetricsURL are the base URLs of the probe and metrics
	// endpoints ("http://127.0.0.1:PORT").
	HealthURL, MetricsURL string

	cmd    *exec.Cmd
	output *SyncBuffer
	exited chan struct{}
	err    error
}

// StartBinary runs binary as a subprocess serving the environment's webhook
// address, with its probes and metrics on free loopback ports and args added,
// and waits until /readyz answers 200. Its output goes to log (may be nil)
// and is kept for Output. It returns an error, as Terminate and Wait do:
// the demo and TestMain run the binary too.
func (e *Environment) StartBinary(ctx context.Context, binary string, log io.Writer, args ...string) (*Process, error) {
	return e.StartBinaryWithEnv(ctx, binary, log, nil, args...)
}

// StartBinaryWithEnv is StartBinary with env (NAME=value) added to the
// process's environment, as a Deployment's env sets it.
func (e *Environment) StartBinaryWithEnv(ctx context.Context, binary string, log io.Writer, env []string, args ...string) (*Process, error) {
	health, err := FreeAddress()
	if err != nil {
		return nil, err
	}
	metrics, err := FreeAddress()
	if err != nil {
		return nil, err
	}
	all := append([]string{
		"--webhook-bind-address=" + e.WebhookBindAddress,
		"--cert-dir=" + e.CertDir,
		"--kubeconfig=" + e.Kubeconfig,
		"--health-probe-bind-address=" + health,
		"--metrics-bind-address=" + metrics,
		// Plain HTTP, so that tests and the demo read /metrics without a
		// token; args may turn it back on (the deploy suite does).
		"--metrics-secure=false",
	}, args...)
	p, err := startProcess(binary, log, env, all...)
	if err != nil {
		return nil, err
	}
	p.HealthURL, p.MetricsURL = "http://"+health, "http://"+metrics
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.waitReady(waitCtx); err != nil {
		p.Kill()
		return nil, fmt.Errorf("%w; its output:\n%s", err, p.Output())
	}
	return p, nil
}

// startProcess starts binary with args and env added to this process's
// environment, keeping its combined output.
func startProcess(binary string, log io.Writer, env []string, args ...string) (*Process, error) {
	out := &SyncBuffer{}
	var w io.Writer = out
	if log != nil {
		w = io.MultiWriter(out, log)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = w, w
	// The process runs with the Deployment's environment (env), not with the
	// Go runtime settings of whoever runs the tests (CI raises GOGC for the
	// compiler).
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOGC=") }), env...)
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", binary, err)
	}
	p := &Process{cmd: cmd, output: out, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitReady polls /readyz until it answers 200.
func (p *Process) waitReady(ctx context.Context) error {
	exited := make(chan error, 1)
	go func() {
		select {
		case <-p.exited:
			exited <- fmt.Errorf("svcguard exited before it was ready: %v", p.err)
		case <-ctx.Done():
		}
	}()
	return waitReady(ctx, p.HealthURL, exited)
}

// Ready reports whether /readyz answers 200, and its verbose body.
func (p *Process) Ready() (bool, string) {
	return Ready(p.HealthURL)
}

// waitReady polls baseURL/readyz until it answers 200, ctx ends, or stopped
// yields (the server exited).
func waitReady(ctx context.Context, baseURL string, stopped <-chan error) error {
	for {
		ok, body := Ready(baseURL)
		if ok {
			return nil
		}
		select {
		case err := <-stopped:
			return fmt.Errorf("svcguard stopped before it was ready: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("svcguard never became ready at %s/readyz; last answer:\n%s", baseURL, body)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ready reports whether baseURL/readyz answers 200, and its verbose body.
func Ready(baseURL string) (bool, string) {
	resp, err := http.Get(baseURL + "/readyz?verbose")
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode == http.StatusOK, string(body)
}

// Metrics returns the text of /metrics. It returns an error rather than
// failing the test: tests poll it inside require.Eventually.
func (p *Process) Metrics() (string, error) {
	resp, err := http.Get(p.MetricsURL + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %s to svcguard: %v", sig, err)
	}
}

// Terminate sends SIGTERM and waits up to timeout for the exit; it returns
// the exit code, or an error when the process did not exit in time (an
// error, not a test failure: the demo and TestMain stop the binary too).
func (p *Process) Terminate(timeout time.Duration) (int, error) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.Wait(timeout)
}

// Wait waits up to timeout for the process to exit and returns its code
// (an error as Terminate, which the demo calls, is built on it).
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.exited:
		var exitErr *exec.ExitError
		if errors.As(p.err, &exitErr) {
			return exitErr.ExitCode(), nil
		}
		if p.err != nil {
			return -1, p.err
		}
		return 0, nil
	case <-time.After(timeout):
		p.Kill()
		return -1, fmt.Errorf("svcguard did not exit within %s", timeout)
	}
}

// Kill stops the process at once.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// Running reports whether the process has not exited.
func (p *Process) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// PID is the process's ID, for reading what the kernel counts of it.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Output returns everything the process printed so far.
func (p *Process) Output() string {
	return p.output.String()
}

// handedOut are the ports FreeAddress has returned in this process.
var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

// FreeAddress returns a loopback host:port that was free a moment ago. It
// returns an error rather than failing a test: StartBinary (the demo) and
// ServerOptions (TestMain) pick addresses with it too.
//
// The port is picked at random below the kernel's ephemeral range and never
// twice in a process. A port the kernel hands out for ":0" is in that range,
// where, between this check and the caller's listen, it can be given to
// another address asked for the same way, or to an outgoing connection's
// local end (a replica's to the API server): a replica then fails to
// listen ("address already in use"), as a cold CI run once did.
func FreeAddress() (string, error) {
	low := ephemeralLow()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range 200 {
		port := 10000 + rand.IntN(low-10000)
		if handedOut[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = l.Close()
		handedOut[port] = true
		return l.Addr().String(), nil
	}
	return "", errors.New("no free loopback port below the ephemeral range after 200 tries")
}

// ephemeralLow is the lowest port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range), 32768 when it cannot be read or
// leaves too little room below it.
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 32768
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low < 12000 {
		return 32768
	}
	return low
}

// BuildBinary builds cmd/svcguard into dir and returns its path; the e2e
// TestMain calls it, hence the error.
func BuildBinary(dir string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	out := dir + "/svcguard"
	cmd := exec.Command("go", "build", "-o", out, "./cmd/svcguard")
	cmd.Dir = root
	cmd.Env = os.Environ()
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/svcguard: %w\n%s", err, msg)
	}
	return out, nil
}

// SyncBuffer is a bytes.Buffer that a process writes while a test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
