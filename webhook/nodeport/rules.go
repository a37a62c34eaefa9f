package nodeport

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// View is what the guard knows of the rest of the cluster, from its caches:
// the pins that other Services declare and the Pods' hostPorts. The rules
// only read it, so tests give them a plain in-memory View.
type View interface {
	// Synced tells whether the caches hold the whole cluster yet; until then
	// rules 3 and 5 use the flag pins only and skip hostPorts.
	Synced() bool
	// AnnotationPins returns the ports whose Service annotation pins nodePort.
	AnnotationPins(nodePort int32) []PortRef
	// HostPortPods returns "namespace/name" of the Pods that use nodePort as
	// a hostPort with protocol.
	HostPortPods(nodePort int32, protocol corev1.Protocol) []string
}

// Guard holds the cluster-wide settings the rules judge by.
type Guard struct {
	// Range is the API server's --service-node-port-range.
	Range Range
	// Reserved are ports the nodes use for something else.
	Reserved PortSet
	// Pins from --pinned-node-ports.
	Pins Pins
	// Admins may force any change.
	Admins Admins
}

// Review is one Service change to judge.
type Review struct {
	// Old is the stored Service; nil on CREATE.
	Old *corev1.Service
	// New is the Service as it would be stored, nodePorts allocated.
	New *corev1.Service
	// User and Groups made the request.
	User   string
	Groups []string
	// View is the cluster as cached.
	View View
}

// Verdict is the guard's answer: denied when Denials is not empty.
type Verdict struct {
	// Denials are one-line reasons, each self-explanatory.
	Denials []string
	// Warnings go back to the client as HTTP Warning headers (each under 120 characters).
	Warnings []string
	// ReassignmentDenied tells whether a denial moved a correctly allocated nodePort.
	ReassignmentDenied bool
	// Degraded tells that a nodePort was judged before the caches synced, by
	// the range, reserved ports and flag pins only.
	Degraded bool
}

// Allowed tells whether the change may go ahead.
func (v Verdict) Allowed() bool {
	return len(v.Denials) == 0
}

// maxWarning is the longest warning the API server passes on whole.
const maxWarning = 119

func (v *Verdict) warn(format string, args ...any) {
	w := fmt.Sprintf("svcguard: "+format, args...)
	if len(w) > maxWarning {
		w = w[:maxWarning-3] + "..."
	}
	v.Warnings = append(v.Warnings, w)
}

// Assessment says whether a nodePort is correctly allocated to a port, and
// which rules held or failed. The audit reports the same assessment.
type Assessment struct {
	// Held lists the rules that held ("in range 30000-32767", ...).
	Held []string
	// Broken lists the rules that failed ("reserved", ...).
	Broken []string
	// Reasons are short, stable labels of the broken rules, for metrics.
	Reasons []string
}

// Correct tells whether every rule held.
func (a Assessment) Correct() bool {
	return len(a.Broken) == 0
}

func (a *Assessment) fail(reason, text string) {
	a.Broken = append(a.Broken, text)
	a.Reasons = append(a.Reasons, reason)
}

// Assess judges nodePort n of port p of svc by the five rules:
//  1. n lies within the range;
//  2. n is not reserved;
//  3. n is not pinned to another Service or another port;
//  4. if the port has a pin, n equals it;
//  5. no Pod uses n as a hostPort (only once the caches are synced).
func (g *Guard) Assess(svc *corev1.Service, p corev1.ServicePort, n int32, view View) Assessment {
	own, _ := annotationPins(svc) // a malformed annotation pins nothing; Judge denies it separately
	return g.assess(svc, p, n, own, view)
}

// assess is Assess with the Service's annotation pins already parsed, so
// that Judge parses them once per request, not once per port.
func (g *Guard) assess(svc *corev1.Service, p corev1.ServicePort, n int32, own map[PortRef]int32, view View) Assessment {
	ref := PortRef{Namespace: svc.Namespace, Name: svc.Name, Port: portKey(p)}
	var a Assessment

	if g.Range.Contains(n) {
		a.Held = append(a.Held, "in range "+g.Range.String())
	} else {
		a.fail("out-of-range", "outside range "+g.Range.String())
	}
	if g.Reserved.Contains(n) {
		a.fail("reserved", "reserved")
	} else {
		a.Held = append(a.Held, "not reserved")
	}

	pin, pinned := g.Pins.Of(ref)
	if !pinned {
		pin, pinned = own[ref]
	}
	if others := g.pinnedElsewhere(ref, n, own, view); len(others) > 0 {
		a.fail("pinned-elsewhere", "pinned to "+strings.Join(others, ", "))
	} else if !pinned {
		a.Held = append(a.Held, "not pinned elsewhere")
	}
	if pinned {
		if pin == n {
			a.Held = append(a.Held, "pinned to this port")
		} else {
			a.fail("pin-mismatch", fmt.Sprintf("not this port's pin %d", pin))
		}
	}

	switch {
	case !view.Synced():
		a.Held = append(a.Held, "hostPorts not checked yet")
	default:
		if pods := view.HostPortPods(n, p.Protocol); len(pods) > 0 {
			a.fail("host-port", "hostPort of Pod "+strings.Join(pods, ", "))
		} else {
			a.Held = append(a.Held, "no hostPort")
		}
	}
	return a
}

// pinnedElsewhere returns the ports other than ref that n is pinned to: by
// flag, by the Service's own annotation, and (once synced) by other
// Services' annotations. The cache's copy of ref's own Service is skipped:
// the object under review is the current truth for it.
func (g *Guard) pinnedElsewhere(ref PortRef, n int32, own map[PortRef]int32, view View) []string {
	var others []PortRef
	for _, o := range g.Pins.Owners(n) {
		if o != ref {
			others = append(others, o)
		}
	}
	for o, pin := range own {
		if pin == n && o != ref {
			others = append(others, o)
		}
	}
	if view.Synced() {
		for _, o := range view.AnnotationPins(n) {
			if !o.sameService(ref) {
				others = append(others, o)
			}
		}
	}
	return dedupe(sortedRefs(others))
}

func dedupe(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// Judge decides a Service CREATE or UPDATE.
func (g *Guard) Judge(r Review) Verdict {
	var v Verdict
	svc := r.New
	key := svc.Namespace + "/" + svc.Name
	own, err := annotationPins(svc)
	if err != nil {
		v.Denials = append(v.Denials, fmt.Sprintf("%s: %v; fix the annotation (PORTNAME=NODEPORT,...)", key, err))
		return v
	}

	forcedBy := ""
	if svc.Annotations[AllowAnnotation] == "true" {
		forcedBy = "annotation " + AllowAnnotation
	} else if admin := g.Admins.Match(r.User, r.Groups); admin != "" {
		forcedBy = "node-port admin " + admin
	}
	judged := false
	// deny refuses with msg, or, when forced, lets the change through with a
	// warning that says what changes (short: warnings are cut at 120 characters).
	deny := func(msg, forced string) {
		if forcedBy != "" {
			v.warn("forced by %s: %s", forcedBy, forced)
			return
		}
		v.Denials = append(v.Denials, fmt.Sprintf("%s: %s; set annotation %s=true to force", key, msg, AllowAnnotation))
	}
	claim := func(p corev1.ServicePort) {
		judged = true
		if msg := g.badClaim(svc, p, own, r.View); msg != "" {
			deny(fmt.Sprintf("port %s nodePort %d denied: %s", portLabel(p), p.NodePort, msg),
				fmt.Sprintf("port %s takes nodePort %d", portLabel(p), p.NodePort))
		}
	}

	if r.Old == nil {
		for _, p := range nodePorts(svc) {
			claim(p)
		}
	} else {
		pairs, removed, added := matchPorts(r.Old.Spec.Ports, svc.Spec.Ports)
		var released []string
		for _, p := range removed {
			if p.NodePort != 0 {
				released = append(released, fmt.Sprint(p.NodePort))
			}
		}
		keepsNodePorts := allocatesNodePorts(svc)
		for _, pair := range pairs {
			o, n := pair.old, pair.new
			switch {
			case o.NodePort == 0:
				if keepsNodePorts && n.NodePort != 0 {
					claim(n)
				}
			case !keepsNodePorts || n.NodePort == 0:
				released = append(released, fmt.Sprint(o.NodePort))
			case n.NodePort != o.NodePort:
				judged = true
				change := fmt.Sprintf("port %s nodePort %d -> %d", portLabel(n), o.NodePort, n.NodePort)
				a := g.Assess(r.Old, o, o.NodePort, r.View) // the old object's own pins judge the old nodePort
				if a.Correct() {
					v.ReassignmentDenied = v.ReassignmentDenied || forcedBy == ""
					deny(fmt.Sprintf("%s denied: %d is correctly allocated (%s)", change, o.NodePort, strings.Join(a.Held, ", ")), change)
				} else {
					v.warn("%s allowed: %d was %s", change, o.NodePort, strings.Join(a.Broken, ", "))
				}
				claim(n)
			}
		}
		if keepsNodePorts {
			for _, p := range added {
				if p.NodePort != 0 {
					claim(p)
				}
			}
		}
		if len(released) > 0 {
			v.warn("%s releases nodePort %s", key, strings.Join(released, ", "))
		}
	}

	if judged && !r.View.Synced() {
		v.Degraded = true
		v.warn("caches not synced: judged by range, reserved ports and pins only")
	}
	if forcedBy != "" && len(v.Warnings) == 0 && judged {
		v.warn("%s set, but nothing needed forcing", AllowAnnotation)
	}
	return v
}

// badClaim says why svc may not take nodePort p.NodePort: it is reserved or
// pinned to another port. Empty: the claim is fine.
func (g *Guard) badClaim(svc *corev1.Service, p corev1.ServicePort, own map[PortRef]int32, view View) string {
	ref := PortRef{Namespace: svc.Namespace, Name: svc.Name, Port: portKey(p)}
	var why []string
	if g.Reserved.Contains(p.NodePort) {
		why = append(why, fmt.Sprintf("%d is reserved", p.NodePort))
	}
	if others := g.pinnedElsewhere(ref, p.NodePort, own, view); len(others) > 0 {
		why = append(why, fmt.Sprintf("%d is pinned to %s", p.NodePort, strings.Join(others, ", ")))
	}
	return strings.Join(why, " and ")
}

// allocatesNodePorts tells whether svc keeps nodePorts at all.
func allocatesNodePorts(svc *corev1.Service) bool {
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts
	default:
		return false
	}
}

// nodePorts returns the ports of svc that hold a nodePort.
func nodePorts(svc *corev1.Service) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			out = append(out, p)
		}
	}
	return out
}

type portPair struct{ old, new corev1.ServicePort }

// matchPorts pairs old ports with new ones: by name, then the rest by (port,
// protocol); a Service with one port before and after pairs that port
// whatever its name and number. The API server keeps an omitted nodePort only
// for a port of the same name, so a rename that re-allocates the nodePort is
// caught as a reassignment by this matching.
func matchPorts(old, new []corev1.ServicePort) (pairs []portPair, removed, added []corev1.ServicePort) {
	if len(old) == 1 && len(new) == 1 {
		return []portPair{{old[0], new[0]}}, nil, nil
	}
	usedOld, usedNew := make([]bool, len(old)), make([]bool, len(new))
	match := func(same func(o, n corev1.ServicePort) bool) {
		for i, o := range old {
			for j, n := range new {
				if !usedOld[i] && !usedNew[j] && same(o, n) {
					usedOld[i], usedNew[j] = true, true
					pairs = append(pairs, portPair{o, n})
				}
			}
		}
	}
	match(func(o, n corev1.ServicePort) bool { return o.Name != "" && o.Name == n.Name })
	match(func(o, n corev1.ServicePort) bool { return o.Port == n.Port && o.Protocol == n.Protocol })
	for i, o := range old {
		if !usedOld[i] {
			removed = append(removed, o)
		}
	}
	for j, n := range new {
		if !usedNew[j] {
			added = append(added, n)
		}
	}
	return pairs, removed, added
}
