package testenv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
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

// ManifestPath returns the path of manifests/name (name relative to
// manifests/, e.g. "webhook/mutating.yaml") in the repository, for a test
// that hands the file to something that reads it itself (--config).
func ManifestPath(t testing.TB, name string) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "manifests", name)
}

// ReadManifest decodes the first YAML document of manifests/name (the whole
// file when it holds one) strictly into into: an unknown or misspelt field
// fails the test. It only reads; it starts nothing, so unit tests use it.
func ReadManifest(t testing.TB, name string, into any) {
	t.Helper()
	data, err := os.ReadFile(ManifestPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.Split(data, []byte("\n---\n"))[0]
	if err := yaml.UnmarshalStrict(first, into); err != nil {
		t.Fatalf("manifests/%s must decode strictly into %T: %v", name, into, err)
	}
}

// ShippedClusterRole reads the ClusterRole that opens manifests/name.
func ShippedClusterRole(t testing.TB, name string) *rbacv1.ClusterRole {
	t.Helper()
	var role rbacv1.ClusterRole
	ReadManifest(t, name, &role)
	if role.Kind != "ClusterRole" {
		t.Fatalf("manifests/%s must start with a ClusterRole, not a %q", name, role.Kind)
	}
	return &role
}
