// Package deploy is the envtest suite of the shipped manifests: every
// overlay, rendered with the kustomize Go API, is applied with server-side
// apply to a real kube-apiserver that holds the CRDs of cert-manager and
// prometheus-operator (from their Go modules), so the real schemas validate
// every object; the binary then runs as the Deployment runs it, with the
// ServiceAccount and RBAC the manifests ship, and cert-manager's own
// controllers issue and rotate the certificate chain in-process.
package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/zap/zapcore"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/svcguard/svcguard/pkg/testenv"
)

var (
	env    *testenv.Environment
	binary string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// cert-manager's controllers log through controller-runtime: errors only.
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapcore.ErrorLevel)))
	certManager, err := testenv.ModuleDir(".", "github.com/cert-manager/cert-manager")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	promOperator, err := testenv.ModuleDir("hack/tools/crds", "github.com/prometheus-operator/prometheus-operator")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "svcguard-deploy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if binary, err = testenv.BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env, err = testenv.Start(testenv.Options{
		// The suite applies the webhook configurations itself, as rendered.
		NoWebhooks: true,
		CRDDirectories: []string{
			filepath.Join(certManager, "deploy", "crds"),
			filepath.Join(promOperator, "example", "prometheus-operator-crd"),
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "envtest suite cannot start:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}()
	code := m.Run()
	if err := env.CheckAdmissionEvaluation(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	return code
}
