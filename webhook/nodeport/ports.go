// Package nodeport is the node-port guard: a validating webhook that denies
// Service changes that would move a correctly allocated nodePort, and claims on
// a nodePort that belongs to someone else (pinned to another port, or reserved).
//
// It exists because of a real incident: a controller that "repaired" nodePort
// conflicts moved an ingress gateway's correctly allocated nodePort 30445 to
// 30194, could not move it back once 30445 was taken, and a zone lost its
// ingress. The guard stops the first step.
//
// The package owns the domain end to end:
//   - ports.go: the value types (ranges, pins, admins) and their parsing;
//   - rules.go: the pure rules (Guard.Judge, Guard.Assess) and the pin
//     authority model, judged against a View of the cluster;
//   - cache.go: the caches that are that View (the guard's part of the
//     shared Pod watch, a slim Service informer), feeding rules 3 and 5 and
//     the pins of other Services;
//   - handler.go: the admission handler (decode, judge, respond);
//   - audit.go: the leader-only audit, the same rules over the same caches;
//   - options.go: the settings (flags and their validation);
//   - webhook.go: Build, which assembles all of it from the settings and the
//     server's dependencies (package component);
//   - selftest.go: the request readiness sends through the real handler.
package nodeport

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/svcguard/svcguard/pkg/options"
	"github.com/svcguard/svcguard/pkg/redact"
)

// Annotations a Service carries for the guard.
const (
	// PinAnnotation pins ports of the Service to nodePorts (PinSyntax), PORT
	// being the port's name (or its number, for an unnamed port).
	PinAnnotation = "svcguard.io/pinned-node-ports"
	// PinSyntax is the syntax of PinAnnotation's value, as messages spell it.
	PinSyntax = "PORTNAME=NODEPORT[,PORTNAME=NODEPORT...]"
	// AllowAnnotation set to "true" on the new object forces a change the
	// guard would deny.
	AllowAnnotation = "svcguard.io/allow-node-port-reassignment"
)

// PortRef names one port of one Service.
type PortRef struct {
	Namespace, Name string
	// Port is the port's name, or its number for an unnamed port.
	Port string
}

// String is "namespace/name:port".
func (r PortRef) String() string {
	return fmt.Sprintf("%s/%s:%s", r.Namespace, r.Name, r.Port)
}

// portKey is how pins and matching name a ServicePort.
func portKey(p corev1.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	return strconv.Itoa(int(p.Port))
}

// portLabel is how messages name a ServicePort.
func portLabel(p corev1.ServicePort) string {
	if p.Name != "" {
		return strconv.Quote(p.Name)
	}
	return fmt.Sprintf("%d/%s", p.Port, p.Protocol)
}

// Range is an inclusive range of ports.
type Range struct {
	First, Last int32
}

// ParseRange parses "30000-32767" or a single port "30080".
func ParseRange(s string) (Range, error) {
	first, last, isRange := strings.Cut(strings.TrimSpace(s), "-")
	lo, err := parseNodePort(first)
	if err != nil {
		return Range{}, err
	}
	hi := lo
	if isRange {
		if hi, err = parseNodePort(last); err != nil {
			return Range{}, err
		}
	}
	if hi < lo {
		return Range{}, fmt.Errorf("range %q ends before it starts", s)
	}
	return Range{First: lo, Last: hi}, nil
}

func parseNodePort(s string) (int32, error) {
	n, err := options.ParsePort(strings.TrimSpace(s)) // the one port parser; a nodePort is never 0
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return int32(n), nil //nolint:gosec // G115: ParsePort bounds n to 0-65535
}

// Contains tells whether p lies in the range.
func (r Range) Contains(p int32) bool {
	return p >= r.First && p <= r.Last
}

// String is "first-last".
func (r Range) String() string {
	if r.First == r.Last {
		return strconv.Itoa(int(r.First))
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// StaticBandLast is the last port of the range's static band: the API
// server's allocator (KEP-3668) prefers the ports above it for random
// allocation and leaves the first min(max(16, size/32), 128) ports for
// explicit choices, so pins belong there.
func (r Range) StaticBandLast() int32 {
	size := r.Last - r.First + 1
	band := min(max(16, size/32), 128, size)
	return r.First + band - 1
}

// DynamicBandPins returns the flag pins that lie above the static band.
func (g *Guard) DynamicBandPins() map[PortRef]int32 {
	out := map[PortRef]int32{}
	for ref, n := range g.Pins.All() {
		if n > g.Range.StaticBandLast() {
			out[ref] = n
		}
	}
	return out
}

// PortSet is a set of ports given as ports and ranges.
type PortSet []Range

// Contains tells whether p is in the set.
func (s PortSet) Contains(p int32) bool {
	for _, r := range s {
		if r.Contains(p) {
			return true
		}
	}
	return false
}

// Pins maps ports to their pinned nodePorts and back.
type Pins struct {
	byPort     map[PortRef]int32
	byNodePort map[int32][]PortRef
}

// Add pins ref to nodePort.
func (p *Pins) Add(ref PortRef, nodePort int32) {
	if p.byPort == nil {
		p.byPort, p.byNodePort = map[PortRef]int32{}, map[int32][]PortRef{}
	}
	p.byPort[ref] = nodePort
	p.byNodePort[nodePort] = append(p.byNodePort[nodePort], ref)
}

// Of returns the nodePort ref is pinned to.
func (p Pins) Of(ref PortRef) (int32, bool) {
	n, ok := p.byPort[ref]
	return n, ok
}

// Owners returns the ports pinned to nodePort.
func (p Pins) Owners(nodePort int32) []PortRef {
	return p.byNodePort[nodePort]
}

// All returns every pin by port, in no order; the map is the Pins' own, to read only.
func (p Pins) All() map[PortRef]int32 {
	return p.byPort
}

// ParsePinFlag parses one --pinned-node-ports value, "NAMESPACE/NAME:PORT=NODEPORT".
func ParsePinFlag(s string) (PortRef, int32, error) {
	target, value, ok := strings.Cut(s, "=")
	svc, port, ok2 := strings.Cut(target, ":")
	ns, name, ok3 := strings.Cut(svc, "/")
	if !ok || !ok2 || !ok3 || ns == "" || name == "" || port == "" {
		return PortRef{}, 0, fmt.Errorf("pin %q is not NAMESPACE/NAME:PORTNAME=NODEPORT", s)
	}
	n, err := parseNodePort(value)
	if err != nil {
		return PortRef{}, 0, fmt.Errorf("pin %q: %w", s, err)
	}
	return PortRef{Namespace: ns, Name: name, Port: port}, n, nil
}

// ParsePinAnnotation parses the value of PinAnnotation into port -> nodePort.
// Errors name the bad item by its position, never by its text: the value is
// whatever a client wrote, and errors end up in logs.
func ParsePinAnnotation(value string) (map[string]int32, error) {
	pins := map[string]int32{}
	firstItem := map[string]int{}
	for i, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		port, nodePort, ok := strings.Cut(item, "=")
		port = strings.TrimSpace(port)
		if !ok || port == "" {
			return nil, fmt.Errorf("item %d is not PORTNAME=NODEPORT", i+1)
		}
		n, err := parseNodePort(nodePort)
		if err != nil {
			return nil, fmt.Errorf("item %d: the nodePort is not a port from 1 to 65535", i+1)
		}
		if _, twice := pins[port]; twice {
			return nil, fmt.Errorf("item %d pins a port that item %d pins already", i+1, firstItem[port])
		}
		pins[port], firstItem[port] = n, i+1
	}
	return pins, nil
}

// portText is how messages name a port taken from the pin annotation: a
// client wrote it, so it is quoted unless it looks like a name, and bounded.
func portText(s string) string {
	return redact.Name(s)
}

// annotationPins returns the pins a Service's annotation declares, as refs,
// including pins on ports the Service lacks (see pinsOnPorts).
func annotationPins(svc *corev1.Service) (map[PortRef]int32, error) {
	value, ok := svc.Annotations[PinAnnotation]
	if !ok {
		return nil, nil
	}
	pins, err := ParsePinAnnotation(value)
	if err != nil {
		return nil, fmt.Errorf("annotation %s is malformed: %w", PinAnnotation, err)
	}
	out := make(map[PortRef]int32, len(pins))
	for port, n := range pins {
		out[PortRef{Namespace: svc.Namespace, Name: svc.Name, Port: port}] = n
	}
	return out, nil
}

// pinsOnPorts returns the pins that name a port svc has: a pin on a port
// the Service lacks pins nothing.
func pinsOnPorts(svc *corev1.Service, pins map[PortRef]int32) map[PortRef]int32 {
	if len(pins) == 0 {
		return nil // read only: a nil map reads as empty, and costs nothing
	}
	out := make(map[PortRef]int32, len(pins))
	for ref, n := range pins {
		if hasPort(svc, ref.Port) {
			out[ref] = n
		}
	}
	return out
}

// hasPort tells whether svc has a port named key (portKey).
func hasPort(svc *corev1.Service, key string) bool {
	for _, p := range svc.Spec.Ports {
		if portKey(p) == key {
			return true
		}
	}
	return false
}

// portKeys returns the names of svc's ports, as pins name them.
func portKeys(svc *corev1.Service) []string {
	keys := make([]string, 0, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		keys = append(keys, portKey(p))
	}
	return keys
}

// Admins are the users and groups whose changes the guard lets through.
type Admins struct {
	users, groups map[string]bool
}

// ParseAdmins parses --node-port-admins entries: a user name, or
// "group:NAME" for a group.
func ParseAdmins(entries []string) Admins {
	a := Admins{users: map[string]bool{}, groups: map[string]bool{}}
	for _, e := range entries {
		if g, ok := strings.CutPrefix(e, "group:"); ok {
			a.groups[g] = true
		} else {
			a.users[e] = true
		}
	}
	return a
}

// Match returns "user NAME" or "group NAME" when user or one of groups is an admin.
func (a Admins) Match(user string, groups []string) string {
	if a.users[user] {
		return "user " + user
	}
	for _, g := range groups {
		if a.groups[g] {
			return "group " + g
		}
	}
	return ""
}

// sortRefs sorts refs by namespace, name and port.
func sortRefs(refs []PortRef) {
	if len(refs) < 2 {
		return // sort.Slice allocates even for nothing to sort
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].String() < refs[j].String() })
}

// sortedPinRefs returns the refs of pins, sorted.
func sortedPinRefs(pins map[PortRef]int32) []PortRef {
	refs := make([]PortRef, 0, len(pins))
	for ref := range pins {
		refs = append(refs, ref)
	}
	sortRefs(refs)
	return refs
}

// sortedRefs returns refs as sorted strings.
func sortedRefs(refs []PortRef) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, r.String())
	}
	sort.Strings(out)
	return out
}
