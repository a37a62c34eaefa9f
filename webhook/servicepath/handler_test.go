package servicepath

import (
	"context"
	"net/http"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/svcguard/svcguard/pkg/admissiontest"
	"github.com/svcguard/svcguard/pkg/fixtures"
)

func serviceRequest(op admissionv1.Operation, subResource string, old, svc *corev1.Service) admissiontest.Request {
	req := admissiontest.Request{Operation: op, SubResource: subResource, Kind: admissiontest.ServiceKind,
		Resource: admissiontest.ServiceResource, Namespace: svc.Namespace, Name: svc.Name, Object: svc}
	if old != nil {
		req.OldObject = old
	}
	return req
}

func testHandler(v *view) *Handler {
	return &Handler{Guard: &Guard{Protected: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}}, View: v, Decoder: admissiontest.Decoder}
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name        string
		request     admissiontest.Request
		wantAllowed bool
		wantCode    int32
		wantMessage string
		wantWarning string
	}{
		{name: "a create claiming the kubernetes ClusterIP as an externalIP is denied with 403",
			request:  serviceRequest(admissionv1.Create, "", nil, svc(externalIPs(clusterIP))),
			wantCode: http.StatusForbidden, wantMessage: "shop/web: spec.externalIPs[0] 10.96.0.1 denied: it is an address of the API server"},
		{name: "a status update setting an API server endpoint as ingress IP is denied",
			request:  serviceRequest(admissionv1.Update, "status", svc(ingressIPs()), svc(ingressIPs(endpointIP))),
			wantCode: http.StatusForbidden, wantMessage: "status.loadBalancer.ingress[0].ip 172.18.0.2 denied"},
		{name: "a named targetPort some Pods lack is allowed with the warning",
			request:     serviceRequest(admissionv1.Create, "", nil, svc(selector("web"), namedPort("web", "http", ""))),
			wantAllowed: true, wantWarning: `svcguard: targetPort "http" is missing on 1 of 2 selected Pods (e.g. web-v2-a): their EndpointSlices get no ports`},
		{name: "delete is not judged", request: serviceRequest(admissionv1.Delete, "", nil, svc(externalIPs(clusterIP))), wantAllowed: true},
		{name: "a create of another subresource is not judged",
			request: serviceRequest(admissionv1.Create, "proxy", nil, svc(externalIPs(clusterIP))), wantAllowed: true},
		{name: "a request for another kind is refused with 400",
			request:  admissiontest.Request{Kind: admissiontest.PodKind, Resource: admissiontest.PodResource, Object: fixtures.Pod("", "")},
			wantCode: http.StatusBadRequest, wantMessage: "only handles Services"},
		{name: "an undecodable Service is refused with 400",
			request: admissiontest.Request{Kind: admissiontest.ServiceKind, Resource: admissiontest.ServiceResource,
				RawObject: []byte(`{"apiVersion":"v1","kind":"Service","spec":{"externalIPs":"10.96.0.1"}}`)},
			wantCode: http.StatusBadRequest, wantMessage: "service-path guard cannot decode the Service"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := testView()
			v.pods = map[string][]viewPod{"shop": {pod("web-v1-a", "web", httpTCP), pod("web-v2-a", "web")}}
			resp := testHandler(v).Handle(context.Background(), tc.request.Build(t))
			admissiontest.CheckValidatingResponse(t, resp)
			assert.Equal(t, tc.wantAllowed, resp.Allowed, "allowed; message: %s", admissiontest.Message(resp))
			if !tc.wantAllowed {
				require.NotNil(t, resp.Result)
				assert.Equal(t, tc.wantCode, resp.Result.Code)
				assert.Contains(t, resp.Result.Message, tc.wantMessage)
			}
			if tc.wantWarning != "" {
				assert.Equal(t, []string{tc.wantWarning}, resp.Warnings)
			}
		})
	}
}

func TestHandlerCountsDecisionsMadeWithoutSyncedCaches(t *testing.T) {
	claim := serviceRequest(admissionv1.Create, "", nil, svc(externalIPs("198.51.100.1")))
	for _, tc := range []struct {
		name         string
		unsynced     bool
		dryRun       bool
		wantDegraded int
	}{
		{"caches synced: a full decision", false, false, 0},
		{"caches not synced: judged by --protected-cidrs and what is known, counted degraded", true, false, 1},
		{"caches not synced, dry run (the readiness self-test is one): not counted", true, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			degraded := 0
			v := testView()
			v.unsynced = tc.unsynced
			h := testHandler(v)
			h.OnDegraded = func() { degraded++ }
			req := claim
			req.DryRun = tc.dryRun
			resp := h.Handle(context.Background(), req.Build(t))
			assert.True(t, resp.Allowed, admissiontest.Message(resp))
			assert.Equal(t, tc.wantDegraded, degraded, "svcguard_degraded_decisions_total increments")
		})
	}
}

func TestSelfTestRequestIsJudgedWithoutError(t *testing.T) {
	req := admissiontest.Request{}.Build(t)
	req.AdmissionRequest = SelfTestRequest()
	resp := testHandler(testView()).Handle(context.Background(), req)
	admissiontest.CheckValidatingResponse(t, resp)
	if !resp.Allowed {
		assert.EqualValues(t, http.StatusForbidden, resp.Result.Code, "a denial is a judgement; only an error fails readiness")
	}
}
