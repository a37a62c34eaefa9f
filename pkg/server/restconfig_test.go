package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/rest"
)

// TestRESTConfigIsNotRateLimitedWhicheverWayItIsFound: a --kubeconfig used to
// keep client-go's 5 requests a second while the in-cluster path had no
// limit; both now leave the limiting to the API server.
func TestRESTConfigIsNotRateLimitedWhicheverWayItIsFound(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {token: t}}]
current-context: c
`), 0o600))

	byFlag, err := loadRESTConfig(kubeconfig)
	require.NoError(t, err)
	t.Setenv("KUBECONFIG", kubeconfig)
	byEnv, err := loadRESTConfig("")
	require.NoError(t, err)
	for name, cfg := range map[string]float32{"--kubeconfig": byFlag.QPS, "$KUBECONFIG": byEnv.QPS} {
		assert.Equal(t, float32(-1), cfg, "QPS of the config found by %s: -1 turns client-side rate limiting off", name)
	}
}

func TestTheClientsetSpeaksProtobufAndStillAcceptsJSON(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:6443"}
	got := protobuf(cfg)
	assert.Equal(t, "application/vnd.kubernetes.protobuf", got.ContentType)
	assert.Equal(t, "application/vnd.kubernetes.protobuf,application/json", got.AcceptContentTypes, "JSON stays acceptable, for what has no protobuf form")
	assert.Empty(t, cfg.ContentType, "the manager's config is left as it was")
}
