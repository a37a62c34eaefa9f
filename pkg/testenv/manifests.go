package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Module is svcguard's Go module path; the harness finds the repository root
// by it, so that suites can run from any package directory.
const Module = "github.com/svcguard/svcguard"

// RepoRoot returns the root of the svcguard repository that holds the
// working directory. It returns an error rather than failing a test because
// Start and BuildBinary, which the demo and TestMain call, need it too.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.HasPrefix(string(data), "module "+Module+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("not inside the svcguard repository (no go.mod of module %s above the working directory)", Module)
		}
		dir = parent
	}
}

// DefaultOverlay is the install the suites and the demo register: the one
// the README's install command applies.
const DefaultOverlay = "default"

var rendered sync.Map // overlay -> []*unstructured.Unstructured

// Rendered returns the objects of manifests/overlays/overlay, rendered with
// the kustomize Go API once per process (copies: callers may change them).
// It only reads; it starts nothing, so unit tests use it.
func Rendered(t testing.TB, overlay string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := renderedOverlay(overlay)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func renderedOverlay(overlay string) ([]*unstructured.Unstructured, error) {
	cached, ok := rendered.Load(overlay)
	if !ok {
		objs, err := Render(filepath.Join("manifests", "overlays", overlay), nil)
		if err != nil {
			return nil, err
		}
		cached, _ = rendered.LoadOrStore(overlay, objs)
	}
	objs := cached.([]*unstructured.Unstructured)
	copies := make([]*unstructured.Unstructured, len(objs))
	for i, u := range objs {
		copies[i] = u.DeepCopy()
	}
	return copies, nil
}

// Shipped decodes the object kind/name that manifests/overlays/overlay
// installs strictly into into: an unknown or misspelt field fails the test.
func Shipped(t testing.TB, overlay, kind, name string, into runtime.Object) {
	t.Helper()
	if err := Find(Rendered(t, overlay), kind, name, into); err != nil {
		t.Fatalf("manifests/overlays/%s: %v", overlay, err)
	}
}

// ShippedConfig returns config.yaml as the overlay's ConfigMap
// svcguard-config (name suffixed with a hash of its content) carries it.
func ShippedConfig(t testing.TB, overlay string) string {
	t.Helper()
	for _, u := range Rendered(t, overlay) {
		if u.GetKind() == "ConfigMap" && strings.HasPrefix(u.GetName(), "svcguard-config-") {
			data, _, _ := unstructured.NestedString(u.Object, "data", "config.yaml")
			return data
		}
	}
	t.Fatalf("manifests/overlays/%s installs no ConfigMap svcguard-config", overlay)
	return ""
}

// ShippedClusterRole returns the ClusterRole name that the overlay installs.
func ShippedClusterRole(t testing.TB, overlay, name string) *rbacv1.ClusterRole {
	t.Helper()
	var role rbacv1.ClusterRole
	Shipped(t, overlay, "ClusterRole", name, &role)
	return &role
}
