package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/webhook/nodeport"
	"github.com/svcguard/svcguard/webhook/servicehost"
)

func readManifest(t *testing.T, name string, into any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "manifests", name))
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(data, into), "manifests/%s must decode strictly", name)
}

// TestManifestDeploymentArgsAndConfigAreValidSettings proves the shipped
// Deployment's args and config.yaml parse as svcguard's flags.
func TestManifestDeploymentArgsAndConfigAreValidSettings(t *testing.T) {
	var deploy appsv1.Deployment
	readManifest(t, "deployment.yaml", &deploy)
	args := deploy.Spec.Template.Spec.Containers[0].Args
	for i, a := range args {
		if strings.HasPrefix(a, "--config=") {
			args[i] = "--config=" + filepath.Join("..", "..", "manifests", "config.yaml")
		}
	}
	err := options.Parse("svcguard", args, &bytes.Buffer{}, options.NewServer(), &servicehost.Options{}, nodeport.NewOptions())
	assert.NoError(t, err, "the Deployment's args %v with manifests/config.yaml must be valid", args)
}

// TestManifestWebhookPointsAtTheServedPath proves the registered path is the
// one the webhook serves.
func TestManifestWebhookPointsAtTheServedPath(t *testing.T) {
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	readManifest(t, "webhook/mutating.yaml", &mwc)
	require.Len(t, mwc.Webhooks, 1)
	assert.Equal(t, servicehost.Path, *mwc.Webhooks[0].ClientConfig.Service.Path)
}

// TestManifestNodePortGuardPointsAtTheServedPath proves the validating
// webhook's registered path is the one the guard serves.
func TestManifestNodePortGuardPointsAtTheServedPath(t *testing.T) {
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	readManifest(t, "webhook/validating.yaml", &vwc)
	require.Len(t, vwc.Webhooks, 1)
	assert.Equal(t, nodeport.Path, *vwc.Webhooks[0].ClientConfig.Service.Path)
}
