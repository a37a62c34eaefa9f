package testenv

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
)

func TestExpandArgsAsTheKubeletDoes(t *testing.T) {
	env := []corev1.EnvVar{{Name: "HOST", Value: "10.0.0.1"}, {Name: "EMPTY"}}
	for _, tc := range []struct{ arg, want string }{
		{"--service-host=$(HOST)", "--service-host=10.0.0.1"},
		{"--service-port=$(EMPTY)", "--service-port="},
		{"--x=$(UNDEFINED)", "--x=$(UNDEFINED)"},
		{"--x=$$(HOST)", "--x=$(HOST)"},
		{"--x=$(HOST", "--x=$(HOST"},
		{"--x=a$b$", "--x=a$b$"},
		{"$(HOST):$(HOST)", "10.0.0.1:10.0.0.1"},
	} {
		assert.Equal(t, tc.want, ExpandArgs([]string{tc.arg}, env)[0], "expanding %q", tc.arg)
	}
}

func TestContainerEnvReadsConfigMapKeys(t *testing.T) {
	c := corev1.Container{Name: "app", Env: []corev1.EnvVar{
		{Name: "A", Value: "a"},
		{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "HOST", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "service-host"}}},
	}}
	env, err := ContainerEnv(c, "svcguard", "pod-1", map[string]map[string]string{"cfg": {"service-host": "10.0.0.1"}})
	require.NoError(t, err)
	assert.Equal(t, []corev1.EnvVar{{Name: "A", Value: "a"}, {Name: "NS", Value: "svcguard"}, {Name: "HOST", Value: "10.0.0.1"}}, env)

	_, err = ContainerEnv(c, "svcguard", "pod-1", map[string]map[string]string{"cfg": {}})
	assert.ErrorContains(t, err, `env HOST of container app: the manifests install no ConfigMap cfg with key "service-host"`)
}
