package servicehost

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/svcguard/svcguard/pkg/admissiontest"
	"github.com/svcguard/svcguard/pkg/fixtures"
)

const (
	testHost = "10.0.0.1"
	testPort = "6443"
)

// pod is the tables' Pod team-a/web, built with opts.
func pod(opts ...fixtures.PodOption) *corev1.Pod {
	return fixtures.Pod("team-a", "web", opts...)
}

// apps adds one app container per env given (nil: no env), named c0, c1, ...
func apps(envs ...[]corev1.EnvVar) fixtures.PodFunc {
	return func(p *corev1.Pod) {
		for i, e := range envs {
			fixtures.Container(fmt.Sprintf("c%d", i), "app", e...)(p)
		}
	}
}

// The other containers of the tables' Pods, and the opt-out label.
var (
	initContainer = fixtures.InitContainer("init", "init")
	sidecar       = fixtures.Sidecar("sidecar", "init")
	debugger      = fixtures.EphemeralContainer("debugger")
	optedOut      = fixtures.Label(OptOutLabel, OptOutValue)
)

func podRequest(op admissionv1.Operation, subResource string, p *corev1.Pod) admissiontest.Request {
	return admissiontest.Request{
		Operation: op, Kind: admissiontest.PodKind, Resource: admissiontest.PodResource,
		SubResource: subResource, Namespace: p.Namespace, Name: p.Name, Object: p,
	}
}

// debugRequest is the pods/ephemeralcontainers UPDATE of kubectl debug: the
// Pod before (old) and after (p).
func debugRequest(old, p *corev1.Pod) admissiontest.Request {
	r := podRequest(admissionv1.Update, "ephemeralcontainers", p)
	r.OldObject = old
	return r
}

func TestHandler(t *testing.T) {
	hostOnly := Injection{Host: testHost}
	hostAndPort := Injection{Host: testHost, Port: testPort}
	injected := fixtures.Env(HostVar, testHost)
	injectedWithPort := fixtures.Env(HostVar, testHost, PortVar, testPort)

	tests := []struct {
		name      string
		injection Injection
		request   admissiontest.Request
		// wantEnvs is the env of each container after the patch; nil: no patch expected.
		wantEnvs map[string][]corev1.EnvVar
		wantOps  int
		// wantPaths, when set, are the paths of the patch operations, in order.
		wantPaths    []string
		wantCode     int32 // non-zero: the request is refused with this code
		wantInjected int
	}{
		{
			name:      "create injects the host into every app container",
			injection: hostOnly,
			request:   podRequest(admissionv1.Create, "", pod(apps(nil, fixtures.Env("A", "1")))),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": injected, "c1": fixtures.Env("A", "1", HostVar, testHost)},
			wantOps:   2, wantInjected: 2,
		},
		{
			name:      "create injects init containers and native sidecars",
			injection: hostOnly,
			request:   podRequest(admissionv1.Create, "", pod(apps(nil), initContainer, sidecar)),
			wantEnvs:  map[string][]corev1.EnvVar{"init": injected, "sidecar": injected, "c0": injected},
			wantOps:   3, wantInjected: 3,
		},
		{
			name:      "create injects ephemeral containers present at creation",
			injection: hostOnly,
			request:   podRequest(admissionv1.Create, "", pod(apps(nil), debugger)),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": injected, "debugger": injected},
			wantOps:   2, wantInjected: 2,
		},
		{
			name:      "port configured: both variables injected",
			injection: hostAndPort,
			request:   podRequest(admissionv1.Create, "", pod(apps(nil))),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": injectedWithPort},
			wantOps:   1, wantInjected: 1,
		},
		{
			name:      "port not configured: the port variable is not injected",
			injection: hostOnly,
			request:   podRequest(admissionv1.Create, "", pod(apps(fixtures.Env("X", "y")))),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": fixtures.Env("X", "y", HostVar, testHost)},
			wantOps:   1, wantInjected: 1,
		},
		{
			name:      "pair rule: a container that sets only the host gets no port",
			injection: hostAndPort,
			request:   podRequest(admissionv1.Create, "", pod(apps(fixtures.Env(HostVar, "127.0.0.1"), nil))),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": fixtures.Env(HostVar, "127.0.0.1"), "c1": injectedWithPort},
			wantOps:   1, wantPaths: []string{"/spec/containers/1/env"}, wantInjected: 1,
		},
		{
			name:      "pair rule: a container that sets only the port gets no host",
			injection: hostAndPort,
			request:   podRequest(admissionv1.Create, "", pod(apps(fixtures.Env(PortVar, "8443"), nil))),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": fixtures.Env(PortVar, "8443"), "c1": injectedWithPort},
			wantOps:   1, wantPaths: []string{"/spec/containers/1/env"}, wantInjected: 1,
		},
		{
			name:      "pair rule: a container that sets only the port gets no host, even without a port configured",
			injection: hostOnly,
			request:   podRequest(admissionv1.Create, "", pod(apps(fixtures.Env(PortVar, "8443")))),
		},
		{
			name:      "pair rule: a container that sets both gets nothing",
			injection: hostAndPort,
			request:   podRequest(admissionv1.Create, "", pod(apps(fixtures.Env(HostVar, "127.0.0.1", PortVar, "8443")))),
		},
		{
			name:      "pair rule: an init container that sets only the port gets nothing, the others both",
			injection: hostAndPort,
			request:   podRequest(admissionv1.Create, "", pod(apps(nil), fixtures.Sidecar("sidecar", "init", fixtures.Env(PortVar, "8443")...))),
			wantEnvs:  map[string][]corev1.EnvVar{"sidecar": fixtures.Env(PortVar, "8443"), "c0": injectedWithPort},
			wantOps:   1, wantPaths: []string{"/spec/containers/0/env"}, wantInjected: 1,
		},
		{
			name:      "pair rule wins over a $(VAR) reference: a container that sets the port and refers to the host gets nothing",
			injection: hostAndPort,
			request:   podRequest(admissionv1.Create, "", pod(apps(fixtures.Env(PortVar, "8443", "URL", "https://$(KUBERNETES_SERVICE_HOST)")))),
		},
		{
			name:      "a variable set from valueFrom counts as set by the owner",
			injection: hostOnly,
			request: podRequest(admissionv1.Create, "", pod(apps([]corev1.EnvVar{{Name: HostVar, ValueFrom: &corev1.EnvVarSource{
				FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.hostIP"}}}}))),
		},
		{
			name:      "an entry referring to $(KUBERNETES_SERVICE_HOST) gets the injected variable defined before it",
			injection: hostOnly,
			request:   podRequest(admissionv1.Create, "", pod(apps(fixtures.Env("A", "1", "URL", "https://$(KUBERNETES_SERVICE_HOST)", "B", "2")))),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": fixtures.Env("A", "1", HostVar, testHost, "URL", "https://$(KUBERNETES_SERVICE_HOST)", "B", "2")},
			// One "add" at the insert position; the entries after it move up.
			wantOps: 1, wantPaths: []string{"/spec/containers/0/env/1"}, wantInjected: 1,
		},
		{
			name:      "an entry referring to $(KUBERNETES_SERVICE_PORT) gets both variables defined before it",
			injection: hostAndPort,
			request:   podRequest(admissionv1.Create, "", pod(apps(fixtures.Env("URL", "https://h:$(KUBERNETES_SERVICE_PORT)")))),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": fixtures.Env(HostVar, testHost, PortVar, testPort, "URL", "https://h:$(KUBERNETES_SERVICE_PORT)")},
			wantOps:   2, wantPaths: []string{"/spec/containers/0/env/0", "/spec/containers/0/env/1"}, wantInjected: 1,
		},
		{
			name:      "the variables go before the first entry that refers to either of them",
			injection: hostAndPort,
			request:   podRequest(admissionv1.Create, "", pod(apps(fixtures.Env("A", "1", "P", "$(KUBERNETES_SERVICE_PORT)", "H", "$(KUBERNETES_SERVICE_HOST)")))),
			wantEnvs: map[string][]corev1.EnvVar{"c0": fixtures.Env("A", "1", HostVar, testHost, PortVar, testPort,
				"P", "$(KUBERNETES_SERVICE_PORT)", "H", "$(KUBERNETES_SERVICE_HOST)")},
			wantOps: 2, wantPaths: []string{"/spec/containers/0/env/1", "/spec/containers/0/env/2"}, wantInjected: 1,
		},
		{
			name:      "a new ephemeral container that refers to $(KUBERNETES_SERVICE_HOST) gets the variable defined before it",
			injection: hostOnly,
			request:   debugRequest(pod(apps(nil)), pod(apps(nil), fixtures.EphemeralContainer("dbg0", fixtures.Env("URL", "$(KUBERNETES_SERVICE_HOST)")...))),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": nil, "dbg0": fixtures.Env(HostVar, testHost, "URL", "$(KUBERNETES_SERVICE_HOST)")},
			wantOps:   1, wantPaths: []string{"/spec/ephemeralContainers/0/env/0"}, wantInjected: 1,
		},
		{
			name:      "every container already sets the variables: allowed without a patch",
			injection: hostAndPort,
			request:   podRequest(admissionv1.Create, "", pod(apps(injectedWithPort))),
		},
		{
			name:      "opt-out label on the Pod: allowed without a patch",
			injection: hostOnly,
			request:   podRequest(admissionv1.Create, "", pod(apps(nil), optedOut)),
		},
		{
			name:      "another value of the opt-out label does not opt out",
			injection: hostOnly,
			request:   podRequest(admissionv1.Create, "", pod(apps(nil), fixtures.Label(OptOutLabel, "enabled"))),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": injected},
			wantOps:   1, wantInjected: 1,
		},
		{
			name:      "ephemeralcontainers update injects only the ephemeral containers",
			injection: hostOnly,
			request:   debugRequest(pod(apps(nil)), pod(apps(nil), debugger)),
			wantEnvs:  map[string][]corev1.EnvVar{"c0": nil, "debugger": injected},
			wantOps:   1, wantPaths: []string{"/spec/ephemeralContainers/0/env"}, wantInjected: 1,
		},
		{
			name:      "ephemeralcontainers update after a missed one: only the new dbg1 is patched, dbg0 is left without the variables",
			injection: hostAndPort,
			request: debugRequest(pod(apps(nil), fixtures.EphemeralContainer("dbg0")),
				pod(apps(nil), fixtures.EphemeralContainer("dbg0"), fixtures.EphemeralContainer("dbg1"))),
			wantEnvs: map[string][]corev1.EnvVar{"c0": nil, "dbg0": nil, "dbg1": injectedWithPort},
			wantOps:  1, wantPaths: []string{"/spec/ephemeralContainers/1/env"}, wantInjected: 1,
		},
		{
			name:      "ephemeralcontainers update that adds nothing new: allowed without a patch",
			injection: hostOnly,
			request:   debugRequest(pod(apps(nil), fixtures.EphemeralContainer("dbg0")), pod(apps(nil), fixtures.EphemeralContainer("dbg0"))),
		},
		{
			name:      "ephemeralcontainers update: a new one that sets only the port gets nothing (pair rule)",
			injection: hostAndPort,
			request:   debugRequest(pod(apps(nil)), pod(apps(nil), fixtures.EphemeralContainer("dbg0", fixtures.Env(PortVar, "8443")...))),
		},
		{
			name:      "ephemeralcontainers update without the old Pod is refused with 400: existing containers cannot be told apart",
			injection: hostOnly,
			request:   podRequest(admissionv1.Update, "ephemeralcontainers", pod(apps(nil), debugger)),
			wantCode:  http.StatusBadRequest,
		},
		{
			name:      "ephemeralcontainers update with an undecodable old Pod is refused with 400",
			injection: hostOnly,
			request: func() admissiontest.Request {
				r := debugRequest(nil, pod(apps(nil), debugger))
				r.OldObject = &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": "v1", "kind": "Pod", "spec": map[string]any{"containers": "not-a-list"}}}
				return r
			}(),
			wantCode: http.StatusBadRequest,
		},
		{
			name:      "ephemeralcontainers update of an opted-out Pod: allowed without a patch",
			injection: hostOnly,
			request:   debugRequest(pod(apps(nil), optedOut), pod(apps(nil), debugger, optedOut)),
		},
		{
			name:      "a plain Pod update is not mutated (container env is immutable)",
			injection: hostOnly,
			request:   podRequest(admissionv1.Update, "", pod(apps(nil))),
		},
		{
			name:      "a status update is not mutated",
			injection: hostOnly,
			request:   podRequest(admissionv1.Update, "status", pod(apps(nil))),
		},
		{
			name:      "a request for another kind is refused with 400",
			injection: hostOnly,
			request: admissiontest.Request{Kind: admissiontest.ServiceKind, Resource: admissiontest.ServiceResource,
				Object: fixtures.Service("", "")},
			wantCode: http.StatusBadRequest,
		},
		{
			name:      "an undecodable body is refused with 400",
			injection: hostOnly,
			request: admissiontest.Request{Kind: admissiontest.PodKind, Resource: admissiontest.PodResource,
				RawObject: []byte(`{"apiVersion":"v1","kind":"Pod","spec":{"containers":"not-a-list"}}`)},
			wantCode: http.StatusBadRequest,
		},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			injectedCount := 0
			h := &Handler{Injection: tc.injection, Decoder: admissiontest.Decoder, OnInjected: func(n int) { injectedCount += n }}
			req := tc.request.Build(t)
			resp := h.Handle(context.Background(), req)

			if tc.wantCode != 0 {
				require.False(t, resp.Allowed, "expected the request to be refused, it was allowed")
				require.NotNil(t, resp.Result)
				assert.Equal(t, tc.wantCode, resp.Result.Code, "response code; message: %s", resp.Result.Message)
				assert.NotEmpty(t, resp.Result.Message, "a refusal must say why")
				return
			}
			require.True(t, resp.Allowed, "expected the request to be admitted, got: %s", admissiontest.Message(resp))
			assert.Equal(t, tc.wantInjected, injectedCount, "containers reported as injected")
			ops := admissiontest.Operations(t, resp)
			if tc.wantEnvs == nil {
				assert.Empty(t, ops, "expected no patch")
				return
			}
			assert.Len(t, ops, tc.wantOps, "patch operations: %v", ops)
			if tc.wantPaths != nil {
				var paths []string
				for _, op := range ops {
					paths = append(paths, op.Path)
				}
				assert.Equal(t, tc.wantPaths, paths, "paths the patch touches")
			}
			var got corev1.Pod
			admissiontest.Patched(t, req, resp, &got)
			assert.Equal(t, tc.wantEnvs, fixtures.Envs(&got), "env of each container after the patch")
		})
	}
}

// TestHandlerIsIdempotent proves that a second call on its own output changes
// nothing, which makes reinvocationPolicy: IfNeeded safe.
func TestHandlerIsIdempotent(t *testing.T) {
	h := &Handler{Injection: Injection{Host: testHost, Port: testPort}, Decoder: admissiontest.Decoder}
	first := podRequest(admissionv1.Create, "", pod(apps(nil, fixtures.Env("URL", "$(KUBERNETES_SERVICE_PORT)")), sidecar, debugger))
	req := first.Build(t)
	resp := h.Handle(context.Background(), req)
	require.NotEmpty(t, admissiontest.Operations(t, resp), "the first call should inject")

	var once corev1.Pod
	admissiontest.Patched(t, req, resp, &once)
	second := h.Handle(context.Background(), podRequest(admissionv1.Create, "", &once).Build(t))
	assert.True(t, second.Allowed)
	assert.Empty(t, admissiontest.Operations(t, second), "a second call on the patched Pod must not patch again")
}

// TestHandlerDryRunHasNoSideEffects proves a dry run gets the same patch but
// is not counted as an injection.
func TestHandlerDryRunHasNoSideEffects(t *testing.T) {
	called := false
	h := &Handler{Injection: Injection{Host: testHost}, Decoder: admissiontest.Decoder, OnInjected: func(int) { called = true }}
	wet := podRequest(admissionv1.Create, "", pod(apps(nil)))
	dry := wet
	dry.DryRun = true

	dryResp := h.Handle(context.Background(), dry.Build(t))
	assert.False(t, called, "a dry run must not be counted")
	wetResp := h.Handle(context.Background(), wet.Build(t))
	assert.True(t, called, "a real request is counted")
	assert.Equal(t, admissiontest.Operations(t, wetResp), admissiontest.Operations(t, dryResp), "a dry run must get the same patch")
}

// TestHandlerPatchIsMinimal proves the patch touches only env: decoding and
// re-encoding a typed Pod adds defaults that must not leak into the patch.
func TestHandlerPatchIsMinimal(t *testing.T) {
	h := &Handler{Injection: Injection{Host: testHost}, Decoder: admissiontest.Decoder}
	req := admissiontest.Request{Kind: admissiontest.PodKind, Resource: admissiontest.PodResource,
		RawObject: []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"a","image":"x"}]}}`)}
	resp := h.Handle(context.Background(), req.Build(t))
	ops := admissiontest.Operations(t, resp)
	require.Len(t, ops, 1, "patch: %v", ops)
	assert.Equal(t, "add", ops[0].Op)
	assert.Equal(t, "/spec/containers/0/env", ops[0].Path)
	assert.JSONEq(t, `[{"name":"KUBERNETES_SERVICE_HOST","value":"10.0.0.1"}]`, string(ops[0].Value))
}
