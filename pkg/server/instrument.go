package server

import (
	"context"
	"fmt"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/metrics"
	"github.com/svcguard/svcguard/pkg/readiness"
	"github.com/svcguard/svcguard/pkg/redact"
)

// instrumented wraps a webhook's handler with what every svcguard webhook
// needs and none should write itself: the common metrics, one log line per
// refused or failed request, and panic recovery into an HTTP 500 answer.
type instrumented struct {
	name    string
	handler admission.Handler
}

// Handle implements admission.Handler.
func (i instrumented) Handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	if readiness.IsSelfTest(ctx) {
		return i.selfTest(ctx, req)
	}
	start := time.Now()
	// controller-runtime's logger already names the object, user and request ID.
	// Kind, operation and subresource are whatever the body says: bounded. The
	// logger is built only for a line that is written: adding values encodes
	// them at once, which every admitted request would pay for nothing.
	logger := func() logr.Logger {
		return log.FromContext(ctx).WithValues("webhook", i.name, "kind", redact.Name(req.Kind.Kind),
			"operation", metrics.OperationLabel(req.Operation), "subResource", redact.Name(req.SubResource))
	}

	defer func() {
		if r := recover(); r != nil {
			metrics.AdmissionPanics.WithLabelValues(i.name).Inc()
			logger().Error(fmt.Errorf("panic: %v", r), "webhook handler panicked; answered HTTP 500", "stack", string(debug.Stack()))
			resp = panicked(i.name, req)
		}
		decision := DecisionOf(resp)
		metrics.ObserveAdmission(i.name, req.Operation, decision, time.Since(start))
		switch decision {
		case metrics.Error:
			// Errors may quote what could not be decoded: keep content out of the log.
			logger().Info("request could not be judged", "code", resultCode(resp), "reason", redact.Quoted(resultMessage(resp)))
		case metrics.Denied:
			logger().Info("request denied", "reason", resultMessage(resp))
		default:
			if log.FromContext(ctx).V(1).Enabled() {
				logger().V(1).Info("request admitted", "decision", decision, "warnings", resp.Warnings)
			}
		}
	}()
	return i.handler.Handle(ctx, req)
}

// selfTest runs readiness's self-test request through the webhook's real
// handler, so that a handler that fails every request fails readiness too.
// It is not counted, and logged only when the handler panics (a bug either
// way); the request is a dry run, so the handler has no side effects.
func (i instrumented) selfTest(ctx context.Context, req admission.Request) (resp admission.Response) {
	defer func() {
		if r := recover(); r != nil {
			log.FromContext(ctx).Error(fmt.Errorf("panic: %v", r), "webhook handler panicked on the readiness self-test",
				"webhook", i.name, "stack", string(debug.Stack()))
			resp = panicked(i.name, req)
		}
	}()
	return i.handler.Handle(ctx, req)
}

// panicked is the answer to a request whose handler panicked.
func panicked(webhook string, req admission.Request) admission.Response {
	return admission.Errored(http.StatusInternalServerError,
		fmt.Errorf("svcguard webhook %s failed internally on %s %s/%s (a bug: please report it with the svcguard logs)",
			webhook, redact.Name(req.Kind.Kind), redact.Name(req.Namespace), redact.Name(req.Name)))
}

// DecisionOf classifies a handler's response for
// svcguard_admission_requests_total (see metrics.DecisionOf).
func DecisionOf(resp admission.Response) metrics.Decision {
	return metrics.DecisionOf(&resp.AdmissionResponse, len(resp.Patches) > 0 || len(resp.Patch) > 0)
}

func resultCode(resp admission.Response) int32 {
	if resp.Result == nil {
		return 0
	}
	return resp.Result.Code
}

func resultMessage(resp admission.Response) string {
	if resp.Result == nil {
		return ""
	}
	return resp.Result.Message
}
