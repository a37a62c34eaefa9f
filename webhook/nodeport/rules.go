package nodeport

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/svcguard/svcguard/pkg/warning"
)

// View is what the guard knows of the rest of the cluster, from its caches:
// the pins that other Services declare and the Pods' hostPorts. The rules
// only read it, so tests give them a plain in-memory View.
type View interface {
	// Synced tells whether the caches hold the whole cluster yet; until then
	// rules 3 and 5 use the flag pins only and skip hostPorts.
	Synced() bool
	// AnnotationPins returns the ports whose Service annotation pins
	// nodePort; only ports the Service has (a pin on a port it lacks pins
	// nothing).
	AnnotationPins(nodePort int32) []PortRef
	// Holders returns the ports that hold nodePort now: the ports whose
	// Service has it as their nodePort.
	Holders(nodePort int32) []PortRef
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
	// RestrictPinAnnotation lets only Admins add, change or remove
	// PinAnnotation (--restrict-pin-annotation).
	RestrictPinAnnotation bool
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

func (v *Verdict) warn(format string, args ...any) {
	v.Warnings = append(v.Warnings, warning.Format(format, args...))
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
//
// Pins count by the authority model of resolvePins: a flag pin outranks
// any annotation pin, and an annotation pin that loses a conflict counts for
// nothing, for rule 3 as for rule 4.
func (g *Guard) Assess(svc *corev1.Service, p corev1.ServicePort, n int32, view View) Assessment {
	pins, _ := annotationPins(svc) // a malformed annotation pins nothing; Judge denies it separately
	return g.assess(svc, p, n, pinsOnPorts(svc, pins), view)
}

// assess is Assess with the Service's annotation pins (on ports it has)
// already parsed, so that Judge parses them once per request, not once per
// port.
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

	onN := g.resolvePins(n, svc, own, view, PortRef{})
	pin, pinned := g.Pins.Of(ref)
	if m, ok := own[ref]; ok && !pinned {
		onM := onN
		if m != n {
			onM = g.resolvePins(m, svc, own, view, PortRef{})
		}
		pin, pinned = m, onM.counts(ref) // a pin that lost a conflict pins nothing
	}
	if others := g.pinnedElsewhere(ref, n, onN); len(others) > 0 {
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
			if flag, ok := g.Pins.Of(ref); ok && flag == n {
				// Whoever may create a Pod could otherwise free a flag-pinned
				// nodePort with a hostPort (even on a Pod that never runs).
				a.Held = append(a.Held, "its flag pin outranks the hostPort of Pod "+strings.Join(pods, ", "))
			} else {
				a.fail("host-port", "hostPort of Pod "+strings.Join(pods, ", "))
			}
		} else {
			a.Held = append(a.Held, "no hostPort")
		}
	}
	return a
}

// pinnedElsewhere returns the ports other than ref that n is pinned to,
// sorted and each once: by flag, and by the annotation pins on n that count
// (onN, from resolvePins).
func (g *Guard) pinnedElsewhere(ref PortRef, n int32, onN pinResolution) []string {
	var others []PortRef
	for _, o := range g.Pins.Owners(n) {
		if o != ref {
			others = append(others, o)
		}
	}
	for _, o := range onN.counted {
		if o != ref {
			others = append(others, o)
		}
	}
	return slices.Compact(sortedRefs(others))
}

// pinResolution is how the authority model settles the annotation pins on
// one nodePort.
type pinResolution struct {
	// counted are the annotation pins that count, for rules 3 and 4.
	counted []PortRef
	// lost maps each annotation pin that counts for nothing to why: the
	// audit reports it as a pin-conflict.
	lost map[PortRef]string
}

func (r pinResolution) counts(ref PortRef) bool {
	return slices.Contains(r.counted, ref)
}

// resolvePins settles the annotation pins on nodePort n by the authority
// model. Admission keeps conflicts from arising (every new or changed pin is
// a claim, see badPin); this decides the ones made before svcguard ran, while
// it was down, or forced by a node-port admin:
//   - a flag pin outranks any annotation pin: the annotation pin of a port
//     that has a flag pin, or on a nodePort flag-pinned to another port,
//     counts for nothing;
//   - an annotation pin alone on n counts, unless a port of another Service
//     holds n: a pin never takes a nodePort from the Service that holds it
//     (claimant, the port whose claim on n is being judged, holds nothing yet);
//   - of several annotation pins on n, those whose port holds n count; when
//     none holds it, none counts.
//
// A pin that counts for nothing is lost: it never makes a nodePort
// incorrect, another port's or its own. self and own (its pins on ports it
// has) stand in for the cache's copy of the Service under judgment.
func (g *Guard) resolvePins(n int32, self *corev1.Service, own map[PortRef]int32, view View, claimant PortRef) pinResolution {
	var candidates []PortRef
	for o, pin := range own {
		if pin == n {
			candidates = append(candidates, o)
		}
	}
	if view.Synced() {
		candidates = append(candidates, otherServices(view.AnnotationPins(n), self)...)
	}
	if len(candidates) == 0 {
		return pinResolution{}
	}
	sortRefs(candidates)
	res := pinResolution{lost: map[PortRef]string{}}
	var left []PortRef
	for _, o := range candidates {
		if flag, ok := g.Pins.Of(o); ok {
			if flag != n {
				res.lost[o] = fmt.Sprintf("its port is pinned to %d by --pinned-node-ports, which outranks the annotation", flag)
			} // else the annotation repeats the flag pin, which counts on its own
			continue
		}
		if owners := othersThan(g.Pins.Owners(n), o); len(owners) > 0 {
			res.lost[o] = fmt.Sprintf("%d is pinned to %s by --pinned-node-ports, which outranks the annotation", n, joinRefs(owners))
			continue
		}
		left = append(left, o)
	}
	holders := holdersOf(n, self, view)
	if len(left) == 1 {
		o := left[0]
		var rivals []PortRef
		for _, h := range holders {
			if h != claimant && (h.Namespace != o.Namespace || h.Name != o.Name) {
				rivals = append(rivals, h)
			}
		}
		if len(rivals) == 0 || slices.Contains(holders, o) {
			res.counted = left
		} else {
			res.lost[o] = fmt.Sprintf("%d is held by %s, not by the pinned port", n, joinRefs(rivals))
		}
		return res
	}
	for _, o := range left {
		if slices.Contains(holders, o) {
			res.counted = append(res.counted, o)
		}
	}
	for _, o := range left {
		switch {
		case res.counts(o):
		case len(res.counted) > 0:
			res.lost[o] = fmt.Sprintf("%d is also pinned to %s, which holds it", n, joinRefs(res.counted))
		default:
			res.lost[o] = fmt.Sprintf("%d is also pinned to %s, and no pinned port holds it", n, joinRefs(othersThan(left, o)))
		}
	}
	return res
}

// holdersOf returns the ports that hold nodePort n: self's, and (once the
// caches are synced) other Services'.
func holdersOf(n int32, self *corev1.Service, view View) []PortRef {
	var out []PortRef
	for _, p := range self.Spec.Ports {
		if p.NodePort == n {
			out = append(out, PortRef{Namespace: self.Namespace, Name: self.Name, Port: portKey(p)})
		}
	}
	if view.Synced() {
		out = append(out, otherServices(view.Holders(n), self)...)
	}
	return out
}

// otherServices returns the refs that are not ports of svc: the cache's copy
// of the Service under judgment is stale, the object under review is the
// truth.
func otherServices(refs []PortRef, svc *corev1.Service) []PortRef {
	var out []PortRef
	for _, o := range refs {
		if o.Namespace != svc.Namespace || o.Name != svc.Name {
			out = append(out, o)
		}
	}
	return out
}

// othersThan returns refs without ref.
func othersThan(refs []PortRef, ref PortRef) []PortRef {
	var out []PortRef
	for _, o := range refs {
		if o != ref {
			out = append(out, o)
		}
	}
	return out
}

// joinRefs is "a/b:c, d/e:f": sorted, each once.
func joinRefs(refs []PortRef) string {
	return strings.Join(slices.Compact(sortedRefs(refs)), ", ")
}

// serviceKey formats as a Service's "namespace/name". Being one pointer, it
// is passed to fmt without allocating, and the string is built only when a
// message is.
type serviceKey struct{ svc *corev1.Service }

// String is "namespace/name".
func (k serviceKey) String() string {
	return k.svc.Namespace + "/" + k.svc.Name
}

// Judge decides a Service CREATE or UPDATE.
func (g *Guard) Judge(r Review) Verdict {
	var v Verdict
	svc := r.New
	key := serviceKey{svc} // written only into messages, so built only for them
	admin := g.Admins.Match(r.User, r.Groups)
	if g.RestrictPinAnnotation && admin == "" && pinAnnotationChanged(r.Old, svc) {
		v.Denials = append(v.Denials, fmt.Sprintf("%s: annotation %s denied: on this cluster only node-port admins (--node-port-admins) "+
			"may add, change or remove it (--%s); ask one to set the pin, or leave the annotation as it was", key, PinAnnotation, RestrictPinAnnotationFlag))
		return v
	}
	pins, err := annotationPins(svc)
	if err != nil {
		v.Denials = append(v.Denials, fmt.Sprintf("%s: %v; write it as %s (PORTNAME: a port's name, or its number if unnamed)", key, err, PinSyntax))
		return v
	}
	own := pinsOnPorts(svc, pins)

	forcedBy := ""
	if svc.Annotations[AllowAnnotation] == "true" {
		forcedBy = "annotation " + AllowAnnotation
	} else if admin != "" {
		forcedBy = "node-port admin " + admin
	}
	judged := g.judgePins(r, pins, admin, &v)
	// deny refuses with msg, or, when forced, lets the change through with a
	// warning that says what changes (short: warnings are cut at 120 characters).
	deny := func(msg, forced string) {
		if forcedBy != "" {
			v.warn("forced by %s: %s", forcedBy, forced)
			return
		}
		v.Denials = append(v.Denials, fmt.Sprintf("%s: %s; set annotation %s=true to force", key, msg, AllowAnnotation))
	}
	// claim judges taking a nodePort. Only a node-port admin may force a bad
	// claim: the allow annotation, which whoever edits the Service can set,
	// forces moves of the Service's own nodePorts, never taking a nodePort
	// that is reserved or belongs to another port.
	claim := func(p corev1.ServicePort) {
		judged = true
		others, mine := g.badClaim(svc, p, own, r.View)
		switch {
		case others == "" && mine == "":
		case admin != "":
			v.warn("forced by node-port admin %s: port %s takes nodePort %d", admin, portLabel(p), p.NodePort)
		case others != "":
			v.Denials = append(v.Denials, fmt.Sprintf("%s: port %s nodePort %d denied: %s; choose another nodePort (or leave it "+
				"to the API server), or ask a node-port admin (--node-port-admins)", key, portLabel(p), p.NodePort, others))
		default:
			deny(fmt.Sprintf("port %s nodePort %d denied: %s", portLabel(p), p.NodePort, mine),
				fmt.Sprintf("port %s takes nodePort %d", portLabel(p), p.NodePort))
		}
	}

	if r.Old == nil {
		for _, p := range nodePorts(svc) {
			claim(p)
		}
	} else {
		var held [4]portPair // most Services have a port or two: the pairs stay on the stack
		pairs, removed, added := matchPorts(r.Old.Spec.Ports, svc.Spec.Ports, held[:0])
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
	if svc.Annotations[AllowAnnotation] == "true" && len(v.Warnings) == 0 && judged && v.Allowed() {
		v.warn("%s set, but nothing needed forcing", AllowAnnotation)
	}
	return v
}

// badClaim says why svc may not take nodePort p.NodePort: others is set when
// the nodePort is reserved or pinned to another port (only a node-port admin
// may force that), mine when it is not the port's own flag pin (the allow
// annotation may force that, as any change to the Service's own nodePorts).
// Both empty: the claim is fine.
func (g *Guard) badClaim(svc *corev1.Service, p corev1.ServicePort, own map[PortRef]int32, view View) (others, mine string) {
	ref := PortRef{Namespace: svc.Namespace, Name: svc.Name, Port: portKey(p)}
	var why []string
	if g.Reserved.Contains(p.NodePort) {
		why = append(why, fmt.Sprintf("%d is reserved", p.NodePort))
	}
	if others := g.pinnedElsewhere(ref, p.NodePort, g.resolvePins(p.NodePort, svc, own, view, ref)); len(others) > 0 {
		why = append(why, fmt.Sprintf("%d is pinned to %s", p.NodePort, strings.Join(others, ", ")))
	}
	if pin, ok := g.Pins.Of(ref); ok && pin != p.NodePort {
		// Without this, a flag-pinned port could come back with a random
		// nodePort after a round trip through ClusterIP, or a rename.
		mine = fmt.Sprintf("the port is pinned to %d by --pinned-node-ports", pin)
	}
	return strings.Join(why, " and "), mine
}

// judgePins judges the annotation pins of r.New: every pin must name a port
// the Service has, and each pin that the change adds or changes (every pin
// on CREATE) is a claim on its nodePort (badPin). Unchanged pins are not
// judged again. A node-port admin may force a claim, with a warning; the
// allow annotation may not (anyone who may edit the Service may set it). It
// tells whether a claim was judged.
func (g *Guard) judgePins(r Review, pins map[PortRef]int32, admin string, v *Verdict) (judged bool) {
	svc := r.New
	var old map[PortRef]int32
	if r.Old != nil {
		old, _ = annotationPins(r.Old) // a malformed annotation pinned nothing
	}
	for _, o := range sortedPinRefs(pins) {
		n := pins[o]
		prev, had := old[o]
		// A pin is a new claim when it is new, changed, names a port the old
		// object lacked, or its Service starts allocating nodePorts: a dormant
		// pin must not wake up unjudged.
		changed := !had || prev != n || (hasPort(svc, o.Port) && !hasPort(r.Old, o.Port)) ||
			(holdsNodePorts(svc) && !holdsNodePorts(r.Old))
		what := fmt.Sprintf("%s/%s: annotation %s pin %s=%d denied", svc.Namespace, svc.Name, PinAnnotation, portText(o.Port), n)
		if !hasPort(svc, o.Port) {
			// Judged when the pin is set, and when the change removes its port;
			// a pin that named no port before pins nothing and stays untouched.
			if changed || (r.Old != nil && hasPort(r.Old, o.Port)) {
				v.Denials = append(v.Denials, fmt.Sprintf("%s: the Service has no port %s (its ports: %s); "+
					"pin only this Service's ports, by name (by number if unnamed), or remove the pin", what, portText(o.Port), orNone(portKeys(svc))))
			}
			continue
		}
		if !changed {
			continue
		}
		judged = true
		why := g.badPin(o, n, svc, r.View)
		switch {
		case why == "":
		case admin != "":
			v.warn("forced by node-port admin %s: pin %s=%d", admin, portText(o.Port), n)
		default:
			v.Denials = append(v.Denials, fmt.Sprintf("%s: %s; pin a nodePort that is in range, not reserved, not pinned and not held "+
				"by another Service, or ask a node-port admin (--node-port-admins)", what, why))
		}
	}
	return judged
}

// badPin says why the annotation pin of port o on nodePort n is not a fine
// claim: n is outside the range, reserved, flag-pinned to another port
// (or o is flag-pinned to another nodePort), or held or pinned by annotation
// by another Service. Empty: the claim is fine. Holders and annotation pins
// are checked once the caches are synced.
func (g *Guard) badPin(o PortRef, n int32, svc *corev1.Service, view View) string {
	var why []string
	if !g.Range.Contains(n) {
		why = append(why, fmt.Sprintf("%d is outside range %s", n, g.Range))
	}
	if g.Reserved.Contains(n) {
		why = append(why, fmt.Sprintf("%d is reserved", n))
	}
	if flag, ok := g.Pins.Of(o); ok && flag != n {
		why = append(why, fmt.Sprintf("port %s is pinned to %d by --pinned-node-ports, which an annotation cannot change", o.Port, flag))
	}
	owners := othersThan(g.Pins.Owners(n), o)
	if len(owners) > 0 {
		why = append(why, fmt.Sprintf("%d is pinned to %s by --pinned-node-ports", n, joinRefs(owners)))
	}
	if !view.Synced() {
		// A pin claim is never urgent the way a deploy is: wait for the
		// caches rather than admit a claim on a nodePort someone may hold.
		why = append(why, fmt.Sprintf("svcguard cannot tell yet who holds or pins %d (its caches are not synced); try again in a minute", n))
	} else {
		holders := slices.DeleteFunc(otherServices(view.Holders(n), svc), func(h PortRef) bool { return slices.Contains(owners, h) })
		if len(holders) > 0 { // a flag pin's owner holding its nodePort is named once
			why = append(why, fmt.Sprintf("%d is held by %s", n, joinRefs(holders)))
		}
		if pinned := otherServices(view.AnnotationPins(n), svc); len(pinned) > 0 {
			why = append(why, fmt.Sprintf("%d is pinned to %s by annotation", n, joinRefs(pinned)))
		}
	}
	return strings.Join(why, " and ")
}

// pinAnnotationChanged tells whether a change adds, changes or removes the
// pin annotation (every pin annotation on CREATE). A value that parses to the
// same pins is no change.
func pinAnnotationChanged(old, svc *corev1.Service) bool {
	nv, nok := svc.Annotations[PinAnnotation]
	if old == nil {
		return nok
	}
	ov, ook := old.Annotations[PinAnnotation]
	if nok != ook {
		return true
	}
	if nv == ov {
		return false
	}
	np, nerr := ParsePinAnnotation(nv)
	op, oerr := ParsePinAnnotation(ov)
	return nerr != nil || oerr != nil || !maps.Equal(np, op)
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
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

// holdsNodePorts tells whether svc (nil: none) allocates nodePorts or has
// some: only such a Service's annotation pins reserve anything, so that a
// Service without nodePorts cannot fence them off for free.
func holdsNodePorts(svc *corev1.Service) bool {
	return svc != nil && (allocatesNodePorts(svc) || len(nodePorts(svc)) > 0)
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
// caught as a reassignment by this matching. Pairs are appended to pairs.
func matchPorts(old, cur []corev1.ServicePort, pairs []portPair) (_ []portPair, removed, added []corev1.ServicePort) {
	if len(old) == 1 && len(cur) == 1 {
		return append(pairs, portPair{old[0], cur[0]}), nil, nil
	}
	usedOld, usedNew := make([]bool, len(old)), make([]bool, len(cur))
	match := func(same func(o, n corev1.ServicePort) bool) {
		for i, o := range old {
			for j, n := range cur {
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
	for j, n := range cur {
		if !usedNew[j] {
			added = append(added, n)
		}
	}
	return pairs, removed, added
}
