package testenv

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// ContainerEnv resolves the env of container c as the kubelet does for a Pod
// named pod in namespace: plain values, the Pod's namespace and name, and
// keys of the ConfigMaps in configMaps (by name). Any other source is an
// error: the harness cannot play it.
func ContainerEnv(c corev1.Container, namespace, pod string, configMaps map[string]map[string]string) ([]corev1.EnvVar, error) {
	var env []corev1.EnvVar
	for _, v := range c.Env {
		from := v.ValueFrom
		switch {
		case from == nil:
			env = append(env, v)
		case from.FieldRef != nil && from.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, corev1.EnvVar{Name: v.Name, Value: namespace})
		case from.FieldRef != nil && from.FieldRef.FieldPath == "metadata.name":
			env = append(env, corev1.EnvVar{Name: v.Name, Value: pod})
		case from.ConfigMapKeyRef != nil:
			data, ok := configMaps[from.ConfigMapKeyRef.Name]
			value, has := data[from.ConfigMapKeyRef.Key]
			if !ok || !has {
				return nil, fmt.Errorf("env %s of container %s: the manifests install no ConfigMap %s with key %q",
					v.Name, c.Name, from.ConfigMapKeyRef.Name, from.ConfigMapKeyRef.Key)
			}
			env = append(env, corev1.EnvVar{Name: v.Name, Value: value})
		default:
			return nil, fmt.Errorf("env %s of container %s: the harness cannot resolve its source", v.Name, c.Name)
		}
	}
	return env, nil
}

// ExpandArgs replaces $(NAME) in args with the value of env NAME, as the
// kubelet expands a container's args: $$ is a literal $, and a reference to
// a variable env does not define stays as written.
func ExpandArgs(args []string, env []corev1.EnvVar) []string {
	values := map[string]string{}
	for _, v := range env {
		values[v.Name] = v.Value
	}
	out := make([]string, len(args))
	for i, a := range args {
		var b strings.Builder
		for j := 0; j < len(a); j++ {
			if a[j] != '$' || j+1 == len(a) {
				b.WriteByte(a[j])
				continue
			}
			switch a[j+1] {
			case '$':
				b.WriteByte('$')
				j++
			case '(':
				end := strings.IndexByte(a[j+2:], ')')
				if end < 0 {
					b.WriteString(a[j:])
					j = len(a)
					continue
				}
				name := a[j+2 : j+2+end]
				if v, ok := values[name]; ok {
					b.WriteString(v)
				} else {
					b.WriteString(a[j : j+3+end])
				}
				j += 2 + end
			default:
				b.WriteByte('$')
			}
		}
		out[i] = b.String()
	}
	return out
}

// ConfigMapsOf returns the data of every ConfigMap in objs by name: what
// ContainerEnv resolves configMapKeyRef from.
func ConfigMapsOf(objs []*unstructured.Unstructured) (map[string]map[string]string, error) {
	out := map[string]map[string]string{}
	for _, u := range objs {
		if u.GetKind() != "ConfigMap" {
			continue
		}
		var cm corev1.ConfigMap
		if err := Find(objs, "ConfigMap", u.GetName(), &cm); err != nil {
			return nil, err
		}
		out[cm.Name] = cm.Data
	}
	return out, nil
}
