// Package servicehost is the service-host webhook: it sets
// KUBERNETES_SERVICE_HOST (and optionally KUBERNETES_SERVICE_PORT) in every
// container of every Pod, so that in-cluster clients reach the API server at
// the configured address instead of through the `kubernetes` Service
// ClusterIP. An explicit `env` entry wins over the variables the kubelet
// derives from Services, which is what makes this work.
//
// The package owns the domain end to end:
//   - rules.go: the pure injection rules (the pair rule, the insert position,
//     new ephemeral containers) and the audit's rules (Missed, Remediable);
//   - handler.go: the admission handler (decode, apply, respond with a patch);
//   - audit.go: the leader-only missed-injection audit and its remediation;
//   - options.go: the settings (flags and their validation);
//   - webhook.go: Build, which assembles the webhook and its audit from the
//     settings and the server's dependencies (package component);
//   - selftest.go: the request readiness sends through the real handler.
package servicehost

import (
	corev1 "k8s.io/api/core/v1"
)

// Names of the variables the webhook sets, as the kubelet and client-go's
// rest.InClusterConfig know them.
const (
	HostVar = "KUBERNETES_SERVICE_HOST"
	PortVar = "KUBERNETES_SERVICE_PORT"
)

// OptOutLabel on a Pod or its Namespace, with value OptOutValue, turns the
// injection off for that Pod or every Pod of that Namespace.
const (
	OptOutLabel = "svcguard.io/service-host-injection"
	OptOutValue = "disabled"
)

// Injection is the set of variables to inject. It is a pure value: applying
// it touches only the Pod given, so the rules are tested with plain tables.
type Injection struct {
	// Host is the value of KUBERNETES_SERVICE_HOST; never empty.
	Host string
	// Port is the value of KUBERNETES_SERVICE_PORT; empty: not injected.
	Port string
}

// appendVars appends the variables to set to vars, in the order they are
// added.
func (in Injection) appendVars(vars []corev1.EnvVar) []corev1.EnvVar {
	vars = append(vars, corev1.EnvVar{Name: HostVar, Value: in.Host})
	if in.Port != "" {
		vars = append(vars, corev1.EnvVar{Name: PortVar, Value: in.Port})
	}
	return vars
}

// OptedOut tells whether labels carry the opt-out label.
func OptedOut(labels map[string]string) bool {
	return labels[OptOutLabel] == OptOutValue
}

// setsServiceVar tells whether env defines either variable of the pair.
func setsServiceVar(env []corev1.EnvVar) bool {
	return defines(env, HostVar) || defines(env, PortVar)
}

func defines(env []corev1.EnvVar, name string) bool {
	for _, e := range env {
		if e.Name == name {
			return true
		}
	}
	return false
}

// SetsServiceVar tells whether any init or regular container of pod defines
// KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT, injected or its
// owner's own. Ephemeral containers do not count: they come and go after the
// Pod was admitted.
//
// Either variable counts, by the pair rule of the injection: a container
// that sets either one itself is its owner's business and gets nothing from
// svcguard, so a Pod whose only container sets just KUBERNETES_SERVICE_PORT
// is stored without KUBERNETES_SERVICE_HOST by design. Counting only the
// host would report such a Pod as missed after every admission, and
// remediation would evict it forever: its controller re-creates it exactly
// as before.
func SetsServiceVar(pod *corev1.Pod) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if setsServiceVar(c.Env) {
				return true
			}
		}
	}
	return false
}

// PodFacts are what decides whether the webhook missed a stored Pod.
type PodFacts struct {
	// OptedOut and NamespaceOptedOut: the Pod or its Namespace carries the opt-out label.
	OptedOut, NamespaceOptedOut bool
	// SetsServiceVar: some container defines KUBERNETES_SERVICE_HOST or
	// KUBERNETES_SERVICE_PORT (see SetsServiceVar).
	SetsServiceVar bool
	// Finished: the Pod succeeded or failed; its containers run no more.
	Finished bool
	// Mirror: the kubelet's mirror of a static Pod, which runs from the node's manifest, not from the API.
	Mirror bool
}

// Missed tells whether a stored Pod should have been injected but was not:
// it was admitted while no replica answered under failurePolicy Ignore, or
// before svcguard was installed. A Pod where any container sets either
// variable itself is its owner's business and never missed (see
// SetsServiceVar).
func Missed(f PodFacts) bool {
	return !f.OptedOut && !f.NamespaceOptedOut && !f.SetsServiceVar && !f.Finished && !f.Mirror
}

// OwnerKind is the kind of a Pod's controller, as far as remediation cares.
type OwnerKind uint8

// The controllers remediation tells apart.
const (
	// NoController: a bare Pod.
	NoController OwnerKind = iota
	ReplicaSet
	StatefulSet
	DaemonSet
	Job
	// OtherController: any other kind (a Node for mirror Pods, custom controllers).
	OtherController
)

// OwnerKindOf classifies the controller owner reference of pod.
func OwnerKindOf(pod *corev1.Pod) OwnerKind {
	for _, ref := range pod.OwnerReferences {
		if ref.Controller == nil || !*ref.Controller {
			continue
		}
		switch {
		case ref.APIVersion == "apps/v1" && ref.Kind == "ReplicaSet":
			return ReplicaSet
		case ref.APIVersion == "apps/v1" && ref.Kind == "StatefulSet":
			return StatefulSet
		case ref.APIVersion == "apps/v1" && ref.Kind == "DaemonSet":
			return DaemonSet
		case ref.APIVersion == "batch/v1" && ref.Kind == "Job":
			return Job
		default:
			return OtherController
		}
	}
	return NoController
}

// Remediable tells whether a missed Pod may be evicted so that its
// controller re-creates it, injected: only Pods that a ReplicaSet,
// StatefulSet or DaemonSet controls (they come back), never bare Pods (they
// would not), never Jobs' Pods (a re-run is not a restart), and never in
// svcguard's own namespace (svcguard must not disrupt itself).
func Remediable(owner OwnerKind, namespace, ownNamespace string) bool {
	if namespace == ownNamespace && ownNamespace != "" {
		return false
	}
	return owner == ReplicaSet || owner == StatefulSet || owner == DaemonSet
}
