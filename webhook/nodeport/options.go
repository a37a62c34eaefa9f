package nodeport

import (
	"flag"
	"fmt"

	"github.com/svcguard/svcguard/pkg/options"
)

// Options are the node-port guard's flags.
type Options struct {
	// NodePortRange is the API server's --service-node-port-range.
	NodePortRange string
	// ReservedNodePorts are ports and ranges the nodes use for something else.
	ReservedNodePorts options.List
	// PinnedNodePorts are NAMESPACE/NAME:PORT=NODEPORT pins.
	PinnedNodePorts options.List
	// NodePortAdmins are users (or group:NAME) who may force any change.
	NodePortAdmins options.List
	// RestrictPinAnnotation lets only NodePortAdmins add, change or remove
	// the pin annotation.
	RestrictPinAnnotation bool
}

// NewOptions returns the guard's options with their defaults.
func NewOptions() *Options {
	return &Options{NodePortRange: "30000-32767"}
}

// AddFlags implements options.Component.
func (o *Options) AddFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.NodePortRange, "node-port-range", o.NodePortRange,
		"The API server's --service-node-port-range (FIRST-LAST); nodePorts outside it are not correctly allocated.")
	fs.Var(&o.ReservedNodePorts, "reserved-node-ports",
		"Ports and ranges (30100,30200-30210) that the nodes use for something else; no Service may claim them. Repeatable.")
	fs.Var(&o.PinnedNodePorts, "pinned-node-ports",
		"NAMESPACE/NAME:PORTNAME=NODEPORT: the only nodePort that port may have, and one no other port may claim. Repeatable.")
	fs.Var(&o.NodePortAdmins, "node-port-admins",
		"Users (or group:NAME) whose Service changes the node-port guard allows with a warning. Repeatable.")
	fs.BoolVar(&o.RestrictPinAnnotation, RestrictPinAnnotationFlag, o.RestrictPinAnnotation,
		"Let only --node-port-admins add, change or remove the "+PinAnnotation+" annotation; the node-port guard denies anyone else "+
			"(for multi-tenant clusters, where whoever may edit a Service is not trusted to pin nodePorts). Needs --node-port-admins. "+
			"Off: anyone who may edit a Service may pin its own ports to nodePorts that are free, in range, not reserved and not pinned.")
}

// RestrictPinAnnotationFlag is the flag that lets only node-port admins set pins by annotation.
const RestrictPinAnnotationFlag = "restrict-pin-annotation"

// Validate implements options.Component: the settings must make a Guard.
func (o *Options) Validate() error {
	_, err := o.Guard()
	return err
}

// Guard parses the settings into the rules' cluster-wide settings; the
// error names the flag and the value that cannot work.
func (o *Options) Guard() (Guard, error) {
	r, err := ParseRange(o.NodePortRange)
	if err != nil {
		return Guard{}, fmt.Errorf("--node-port-range=%q: %w", o.NodePortRange, err)
	}
	if o.RestrictPinAnnotation && len(o.NodePortAdmins) == 0 {
		return Guard{}, fmt.Errorf("--%s needs --node-port-admins: without one, nobody could add, change or remove the %s annotation "+
			"(name at least one user or group:NAME, e.g. group:system:masters)", RestrictPinAnnotationFlag, PinAnnotation)
	}
	g := Guard{Range: r, Admins: ParseAdmins(o.NodePortAdmins), RestrictPinAnnotation: o.RestrictPinAnnotation}
	for _, v := range o.ReservedNodePorts {
		rr, err := ParseRange(v)
		if err != nil {
			return Guard{}, fmt.Errorf("--reserved-node-ports=%q: %w", v, err)
		}
		g.Reserved = append(g.Reserved, rr)
	}
	for _, v := range o.PinnedNodePorts {
		ref, n, err := ParsePinFlag(v)
		if err != nil {
			return Guard{}, fmt.Errorf("--pinned-node-ports: %w", err)
		}
		if !r.Contains(n) {
			return Guard{}, fmt.Errorf("--pinned-node-ports=%q: %d is outside --node-port-range %s", v, n, r)
		}
		if g.Reserved.Contains(n) {
			return Guard{}, fmt.Errorf("--pinned-node-ports=%q: %d is also in --reserved-node-ports", v, n)
		}
		if prev, ok := g.Pins.Of(ref); ok {
			return Guard{}, fmt.Errorf("--pinned-node-ports: %s is pinned twice (%d and %d)", ref, prev, n)
		}
		g.Pins.Add(ref, n)
	}
	return g, nil
}
