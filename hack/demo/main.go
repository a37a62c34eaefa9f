// Command demo runs svcguard's main job locally (`make demo`): a local
// control plane (kube-apiserver + etcd built from Go modules), a throwaway CA
// and serving certificate, the real svcguard binary with the shipped webhook
// configuration registered, and a Pod that comes back injected. It then keeps
// everything running for you to try more by hand until Ctrl-C, and cleans up
// every process and temporary file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/testenv"
)

func main() {
	binary := flag.String("svcguard", "bin/svcguard", "svcguard binary to run")
	host := flag.String("service-host", "192.0.2.10", "KUBERNETES_SERVICE_HOST to inject")
	port := flag.String("service-port", "6443", "KUBERNETES_SERVICE_PORT to inject")
	once := flag.Bool("once", false, "exit after showing the injected Pod instead of waiting for Ctrl-C (for tests)")
	flag.Parse()
	if err := run(*binary, *host, *port, *once); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(binary, host, port string, once bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	step("Starting a local control plane (kube-apiserver + etcd) and registering the webhook configurations of manifests/overlays/default with a throwaway CA")
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping the control plane and removing temporary files")
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "demo: cleanup:", err)
		}
	}()

	logPath := filepath.Join(os.TempDir(), "svcguard-demo.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer os.Remove(logPath)
	defer logFile.Close()

	step(fmt.Sprintf("Starting %s --service-host=%s --service-port=%s (logs: %s)", binary, host, port, logPath))
	// Nothing routes to the demo replica through a Service, so it has no connections to drain.
	args := []string{"--service-host=" + host, "--service-port=" + port, "--zap-devel", "--shutdown-drain=0s"}
	proc, err := env.StartBinary(ctx, binary, logFile, args...)
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping svcguard (SIGTERM)")
		if code, err := proc.Terminate(30 * time.Second); err != nil || code != 0 {
			fmt.Fprintf(os.Stderr, "demo: svcguard exit %d: %v\n", code, err)
		}
	}()

	step("Creating Pod demo/app with an init container and an app container")
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	if err := env.Client.Create(ctx, ns); err != nil {
		return err
	}
	pod := fixtures.Pod("demo", "app", fixtures.InitContainer("migrate", "busybox"), fixtures.Container("app", "nginx"))
	if err := env.Client.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating the Pod: %w", err)
	}
	fmt.Println("\nThe API server stored the Pod with these variables:")
	printEnv(pod)

	step("Installing the policy twin of manifests/components/policy and stopping svcguard: a total outage")
	twin, err := testenv.PolicyTwinObjects(host, port)
	if err != nil {
		return err
	}
	if err := testenv.Apply(ctx, env.Config, twin, false); err != nil {
		return err
	}
	if code, err := proc.Terminate(30 * time.Second); err != nil || code != 0 {
		return fmt.Errorf("stopping svcguard: exit %d (%v)", code, err)
	}
	// The API server takes a moment to load a new policy: wait until a dry run comes back injected.
	if err := waitForTwin(ctx, env); err != nil {
		return err
	}
	outage := fixtures.Pod("demo", "during-outage", fixtures.Container("app", "nginx"))
	if err := env.Client.Create(ctx, outage); err != nil {
		return fmt.Errorf("creating the Pod: %w", err)
	}
	fmt.Println("\nWith no svcguard replica answering, the API server stored Pod demo/during-outage with these variables")
	fmt.Println("(set by the policy twin inside the API server):")
	printEnv(outage)

	step("Starting svcguard again")
	restarted, err := env.StartBinary(ctx, binary, logFile, args...)
	if err != nil {
		return err
	}
	proc = restarted
	if once {
		return nil
	}

	fmt.Printf(`
svcguard is running. Try more by hand:
  export KUBECONFIG=%s
  kubectl run test --image=nginx && kubectl get pod test -o jsonpath='{.spec.containers[0].env}'
  kubectl label namespace demo svcguard.io/service-host-injection=disabled   # opt a namespace out
  curl -s %s/metrics | grep svcguard_
Press Ctrl-C to stop and clean up.
`, env.Kubeconfig, proc.MetricsURL)
	<-ctx.Done()
	fmt.Println()
	return nil
}

// printEnv prints the env of every init and regular container of pod.
func printEnv(pod *corev1.Pod) {
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		for _, e := range c.Env {
			fmt.Printf("  container %-8s %s=%s\n", c.Name, e.Name, e.Value)
		}
	}
}

// waitForTwin waits until a dry-run Pod comes back with the variables.
func waitForTwin(ctx context.Context, env *testenv.Environment) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		probe := fixtures.Pod("demo", "probe", fixtures.Container("app", "nginx"))
		if err := env.Client.Create(ctx, probe, client.DryRunAll); err != nil {
			return err
		}
		if len(probe.Spec.Containers[0].Env) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the policy twin did not take effect within 30 s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func step(msg string) {
	fmt.Println("==> " + msg)
}
