package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ControllerManagerControllers are the kube-controller-manager controllers the
// end-to-end suite runs: Deployments and ReplicaSets that make Pods, the
// disruption controller that judges PodDisruptionBudgets, the garbage
// collector, and the namespace controller that empties deleted namespaces.
// No scheduler runs: Pods stay Pending, which admission is all about.
const ControllerManagerControllers = "deployment,replicaset,disruption,garbage-collector-controller,namespace"

// StartControllerManager runs kube-controller-manager (built by `make envtest`
// into the envtest binaries' directory) against the environment, and waits
// until its /healthz answers. It returns an error, as StartBinary does: a
// TestMain calls it.
func (e *Environment) StartControllerManager(ctx context.Context, log io.Writer) (*Process, error) {
	bin := filepath.Join(e.env.BinaryAssetsDirectory, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no kube-controller-manager in %s: run `make envtest` to build it from Go modules", e.env.BinaryAssetsDirectory)
	}
	addr, err := FreeAddress()
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	p, err := startProcess(bin, log, nil,
		"--kubeconfig="+e.Kubeconfig,
		"--authentication-kubeconfig="+e.Kubeconfig,
		"--authorization-kubeconfig="+e.Kubeconfig,
		"--controllers="+ControllerManagerControllers,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+port,
		// Deployments of 100 Pods in seconds, not at the default 20 requests a second.
		"--kube-api-qps=200", "--kube-api-burst=400",
	)
	if err != nil {
		return nil, err
	}
	health := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, // its self-signed serving certificate; only /healthz is read
	}}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		resp, err := health.Get("https://" + addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("kube-controller-manager exited before it was healthy: %v; its output:\n%s", p.err, p.Output())
		case <-waitCtx.Done():
			p.Kill()
			return nil, fmt.Errorf("kube-controller-manager never answered /healthz at %s; its output:\n%s", addr, p.Output())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RestartAPIServer stops kube-apiserver with SIGTERM, as a rolling upgrade of
// the control plane does (SIGKILL after 10s: its graceful shutdown waits up
// to a minute for requests in flight, longer than a test should), waits for
// it to exit, and starts it again with the same command line, so on the
// same address and etcd with the same certificates: clients keep their
// configuration and must reconnect. It returns how long the API server was
// not answering /readyz. The restarted process stays the harness's: Stop
// ends it.
func (e *Environment) RestartAPIServer(ctx context.Context) (time.Duration, error) {
	pid, err := e.APIServerPID()
	if err != nil {
		return 0, err
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, err
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	stopped := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("stopping kube-apiserver (pid %d): %w", pid, err)
	}
	// Exited, or only a zombie left for envtest's Wait to reap.
	kill := time.After(10 * time.Second)
	for alive(pid) {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("kube-apiserver (pid %d) did not exit: %w", pid, ctx.Err())
		case <-kill:
			_ = syscall.Kill(pid, syscall.SIGKILL)
		case <-time.After(50 * time.Millisecond):
		}
	}
	p, err := startProcess(args[0], nil, nil, args[1:]...)
	if err != nil {
		return 0, err
	}
	e.restarted = append(e.restarted, p)
	for {
		if err := e.apiServerReady(ctx); err == nil {
			return time.Since(stopped), nil
		}
		select {
		case <-p.exited:
			return 0, fmt.Errorf("the restarted kube-apiserver exited: %v; its output:\n%s", p.err, p.Output())
		case <-ctx.Done():
			return 0, fmt.Errorf("the restarted kube-apiserver never became ready: %w; its output:\n%s", ctx.Err(), p.Output())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// apiServerReady asks the API server's /readyz.
func (e *Environment) apiServerReady(ctx context.Context) error {
	cs, err := e.clientset()
	if err != nil {
		return err
	}
	return cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
}

// APIServerPID finds the kube-apiserver this process runs (benchmarks
// read its CPU time).
func (e *Environment) APIServerPID() (int, error) {
	if n := len(e.restarted); n > 0 {
		return e.restarted[n-1].PID(), nil
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, entry := range entries {
		pid, err := strconv.Atoi(entry.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		_, rest, ok := bytes.Cut(stat, []byte(") "))
		fields := strings.Fields(string(rest))
		if !ok || len(fields) < 2 || fields[1] != strconv.Itoa(os.Getpid()) || !bytes.Contains(stat, []byte("(kube-apiserver)")) {
			continue
		}
		return pid, nil
	}
	return 0, fmt.Errorf("no kube-apiserver child of this process")
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := bytes.Cut(stat, []byte(") "))
	return len(rest) > 0 && rest[0] != 'Z'
}
