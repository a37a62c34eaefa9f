package nodeport

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/svcguard/svcguard/pkg/admissiontest"

	"github.com/svcguard/svcguard/pkg/fixtures"
)

func serviceRequest(op admissionv1.Operation, old, svc *corev1.Service) admissiontest.Request {
	req := admissiontest.Request{Operation: op, Kind: admissiontest.ServiceKind, Resource: admissiontest.ServiceResource,
		Namespace: svc.Namespace, Name: svc.Name, Object: svc}
	if old != nil {
		req.OldObject = old
	}
	return req
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name        string
		request     admissiontest.Request
		wantAllowed bool
		wantCode    int32
		wantMessage string
		wantWarning string
		wantCounted bool
	}{
		{
			name:        "update moving a correctly allocated nodePort is denied and counted",
			request:     serviceRequest(admissionv1.Update, gw(fixtures.Port("tcp", 443, 30445)), gw(fixtures.Port("tcp", 443, 30194))),
			wantCode:    http.StatusForbidden,
			wantMessage: "30445 is correctly allocated",
			wantCounted: true,
		},
		{
			name: "a dry run is denied the same but not counted",
			request: func() admissiontest.Request {
				r := serviceRequest(admissionv1.Update, gw(fixtures.Port("tcp", 443, 30445)), gw(fixtures.Port("tcp", 443, 30194)))
				r.DryRun = true
				return r
			}(),
			wantCode:    http.StatusForbidden,
			wantMessage: "30445 is correctly allocated",
		},
		{
			name:        "create claiming a pinned nodePort is denied, not counted as a reassignment",
			request:     serviceRequest(admissionv1.Create, nil, fixtures.Service("x", "y", fixtures.Port("http", 80, 30445))),
			wantCode:    http.StatusForbidden,
			wantMessage: "30445 is pinned to istio-ingress/istio-ingressgateway:tcp",
		},
		{
			name:        "allowed repair carries its warning",
			request:     serviceRequest(admissionv1.Update, fixtures.Service("a", "web", fixtures.Port("http", 80, 30105)), fixtures.Service("a", "web", fixtures.Port("http", 80, 31001))),
			wantAllowed: true,
			wantWarning: "30105 was reserved",
		},
		{
			name:        "delete is not judged",
			request:     serviceRequest(admissionv1.Delete, nil, gw(fixtures.Port("tcp", 443, 30445))),
			wantAllowed: true,
		},
		{
			name: "a request for another kind is refused with 400",
			request: admissiontest.Request{Kind: admissiontest.PodKind, Resource: admissiontest.PodResource,
				Object: fixtures.Pod("", "")},
			wantCode: http.StatusBadRequest, wantMessage: "only handles Services",
		},
		{
			name: "an undecodable Service is refused with 400",
			request: admissiontest.Request{Kind: admissiontest.ServiceKind, Resource: admissiontest.ServiceResource,
				RawObject: []byte(`{"apiVersion":"v1","kind":"Service","spec":{"ports":"many"}}`)},
			wantCode: http.StatusBadRequest, wantMessage: "cannot decode the Service",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counted := false
			h := &Handler{Guard: testGuard(), View: fakeView{}, Decoder: admissiontest.Decoder, OnDenied: func() { counted = true }}
			resp := h.Handle(context.Background(), tc.request.Build(t))
			assert.Equal(t, tc.wantAllowed, resp.Allowed, "allowed; message: %s", admissiontest.Message(resp))
			if !tc.wantAllowed {
				require.NotNil(t, resp.Result)
				assert.Equal(t, tc.wantCode, resp.Result.Code)
				assert.Contains(t, resp.Result.Message, tc.wantMessage)
			}
			if tc.wantWarning != "" {
				assert.Contains(t, resp.Warnings, "svcguard: port \"http\" nodePort 30105 -> 31001 allowed: 30105 was reserved")
			}
			assert.Equal(t, tc.wantCounted, counted, "svcguard_node_port_reassignments_denied_total counted")
		})
	}
}

func TestHandlerCountsDecisionsMadeWithoutSyncedCaches(t *testing.T) {
	move := serviceRequest(admissionv1.Update, gw(fixtures.Port("tcp", 443, 30445)), gw(fixtures.Port("tcp", 443, 30194)))
	for _, tc := range []struct {
		name         string
		view         fakeView
		dryRun       bool
		wantDegraded int
	}{
		{"caches synced: a full decision", fakeView{}, false, 0},
		{"caches not synced: judged by range, reserved ports and flag pins, counted degraded", fakeView{unsynced: true}, false, 1},
		{"caches not synced, dry run (the readiness self-test is one): not counted", fakeView{unsynced: true}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			degraded := 0
			h := &Handler{Guard: testGuard(), View: tc.view, Decoder: admissiontest.Decoder, OnDegraded: func() { degraded++ }}
			req := move
			req.DryRun = tc.dryRun
			resp := h.Handle(context.Background(), req.Build(t))
			assert.False(t, resp.Allowed, "the flag pin still protects 30445 without caches")
			assert.Equal(t, tc.wantDegraded, degraded, "svcguard_degraded_decisions_total increments")
		})
	}
}
