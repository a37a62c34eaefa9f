package servicehost

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/component"
	"github.com/svcguard/svcguard/pkg/metrics"
)

// Name labels this webhook's metrics and logs.
const Name = "service-host"

// Path is where the MutatingWebhookConfiguration points.
const Path = "/webhooks/service-host"

// Build assembles the service-host webhook and its leader-only
// missed-injection audit from validated settings and the server's
// dependencies.
//
// While --service-host is empty the webhook is off and has no audit (nothing
// is meant to be injected): it still answers on its path, admitting every Pod
// unchanged, so that a registered configuration never meets a 404 (which
// failurePolicy: Fail would turn into refused Pods).
func Build(o *Options, deps component.Dependencies) (component.Built, error) {
	if o.ServiceHost == "" {
		return component.Built{Webhook: component.Webhook{Name: Name, Path: Path, Off: true, SelfTest: SelfTestRequest(),
			Handler: admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
				return admission.Allowed("service-host webhook is off: svcguard runs without --service-host")
			})}}, nil
	}
	audit, err := NewAudit(deps.Client, deps.Pods, deps.Recorder, AuditOptions{
		Interval:      deps.AuditInterval,
		Remediate:     o.RemediateMissedPods,
		RatePerMinute: o.RemediationRate,
		OwnNamespace:  deps.OwnNamespace,
	}, log.Log.WithName(Name+"-audit"))
	if err != nil {
		return component.Built{}, err
	}
	built := component.Built{
		Webhook: component.Webhook{
			Name:     Name,
			Path:     Path,
			SelfTest: SelfTestRequest(),
			Handler: &Handler{
				Injection:  Injection{Host: o.ServiceHost, Port: o.ServicePort},
				Decoder:    deps.Decoder,
				OnInjected: func(n int) { metrics.InjectedContainers.Add(float64(n)) },
			},
		},
		Audit: audit,
	}
	if o.InjectionPolicy != "" {
		twin := &TwinCheck{
			Name: o.InjectionPolicy, Injection: Injection{Host: o.ServiceHost, Port: o.ServicePort},
			Client: deps.Client, Interval: deps.AuditInterval, Log: log.Log.WithName(Name + "-policy-twin"),
		}
		built.Checks, built.Notes = append(built.Checks, twin), append(built.Notes, twin.Note)
	}
	return built, nil
}
