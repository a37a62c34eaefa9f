package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Render builds the kustomization at dir (relative to the repository root,
// e.g. "manifests/overlays/default") with the kustomize Go API and the
// options `kubectl apply -k` uses, and returns its objects in order. extra
// files are added to dir first, in memory (the bring-your-own-cert overlay
// needs its certificate files); the repository is never written.
func Render(dir string, extra map[string][]byte) ([]*unstructured.Unstructured, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	memory := filesys.MakeFsInMemory()
	manifests := filepath.Join(root, "manifests")
	err = filepath.WalkDir(manifests, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return memory.WriteFile(path, data)
	})
	if err != nil {
		return nil, fmt.Errorf("copying manifests/: %w", err)
	}
	for name, data := range extra {
		if err := memory.WriteFile(filepath.Join(root, dir, name), data); err != nil {
			return nil, err
		}
	}
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(memory, filepath.Join(root, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out, err := resources.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	return DecodeObjects(out)
}

// DecodeObjects decodes a multi-document YAML stream into objects.
func DecodeObjects(data []byte) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := decoder.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

// Find returns the object of objs with kind and name, converted into
// into (a typed API object), or an error naming what is missing.
func Find(objs []*unstructured.Unstructured, kind, name string, into runtime.Object) error {
	for _, u := range objs {
		if u.GetKind() == kind && u.GetName() == name {
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
				return fmt.Errorf("%s %s does not decode strictly into %T: %w", kind, name, into, err)
			}
			return nil
		}
	}
	return fmt.Errorf("no %s %q among the %d rendered objects", kind, name, len(objs))
}

// FieldManager is the server-side-apply field manager of the tests.
const FieldManager = "svcguard-tests"

// Apply applies objs to the API server with server-side apply, as
// `kubectl apply --server-side` does, with strict field validation so that
// a field the real schema lacks fails. Namespaces and CRDs go first.
// dryRun asks the API server to validate and default without storing.
func Apply(ctx context.Context, cfg *rest.Config, objs []*unstructured.Unstructured, dryRun bool) error {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ordered := make([]*unstructured.Unstructured, 0, len(objs))
	for _, first := range []bool{true, false} {
		for _, u := range objs {
			if k := u.GetKind(); (k == "Namespace" || k == "CustomResourceDefinition") == first {
				ordered = append(ordered, u)
			}
		}
	}
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: new(true), FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	for _, u := range ordered {
		gvk := u.GroupVersionKind()
		mapping, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("%s %s: %w", gvk.Kind, u.GetName(), err)
		}
		data, err := u.MarshalJSON()
		if err != nil {
			return err
		}
		var r dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			r = dyn.Resource(mapping.Resource).Namespace(u.GetNamespace())
		}
		if _, err := r.Patch(ctx, u.GetName(), types.ApplyPatchType, data, opts); err != nil {
			return fmt.Errorf("server-side apply of %s %s/%s: %w", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
	}
	return nil
}

// ModuleDir returns the directory of module (as go.mod of the repository, or
// of the module holding dir, requires it) in the module cache, downloading
// it if needed: tests load CRDs from the Go modules of the projects that own
// them rather than from copies. dir is relative to the repository root ("."
// for svcguard's own go.mod).
func ModuleDir(dir, module string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "mod", "download", "-json", module)
	cmd.Dir = filepath.Join(root, dir)
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, exit.Stderr)
		}
		return "", fmt.Errorf("go mod download %s in %s: %w (%s)", module, dir, err, strings.TrimSpace(string(out)))
	}
	var info struct{ Dir string }
	if err := utilyaml.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s in %s gave no directory: %s", module, dir, out)
	}
	return info.Dir, nil
}
