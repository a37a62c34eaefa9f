package testenv

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"
)

// Probe is a readiness probe as a Deployment declares it: the kubelet asks
// Path every Period, and FailureThreshold failures in a row make the Pod
// unready (one success makes it ready again).
type Probe struct {
	Path             string
	Period           time.Duration
	FailureThreshold int
}

// ServiceStandIn stands in for a Service in front of svcguard's replicas, as
// kube-proxy makes one out of the endpoints the kubelet's readiness probes
// decide, for a control plane that has no nodes:
//   - each new connection goes to one ready endpoint, picked at random as
//     kube-proxy's iptables and nftables modes do;
//   - an endpoint is ready once its probe passed and unready once Probe's
//     threshold of probes failed in a row; either change reaches the
//     routing EndpointLag later (the endpoints controller and kube-proxy are
//     not instant);
//   - an established connection stays on its endpoint until one side
//     closes it, also after the endpoint left, as conntrack keeps it: this
//     is what makes draining hard;
//   - with no ready endpoint, or when the chosen endpoint does not accept,
//     the connection is closed at once, an error the API server does not
//     retry, as it does not retry a refused connection.
type ServiceStandIn struct {
	// Addr is host:port where the stand-in listens: the Service's address.
	Addr string

	probe       Probe
	endpointLag time.Duration
	listener    net.Listener
	client      *http.Client

	mu        sync.Mutex
	endpoints map[string]*endpoint
	stats     StandInStats
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup
}

// StandInStats counts what the stand-in did with connections.
type StandInStats struct {
	// Routed counts connections by endpoint name.
	Routed map[string]int
	// NoEndpoint counts connections closed because no endpoint was ready;
	// Refused those whose chosen endpoint did not accept.
	NoEndpoint, Refused int
}

type endpoint struct {
	addr, readyURL string
	// routed is whether new connections may go here (the routing view,
	// EndpointLag behind probed).
	routed, probed bool
	// deleted: its Pod is being deleted; probes no longer count.
	deleted  bool
	failures int
	cancel   context.CancelFunc
}

// NewServiceStandIn listens on addr ("127.0.0.1:0" for any port) and routes
// to the endpoints added with Add, judged by probe.
func NewServiceStandIn(addr string, probe Probe, endpointLag time.Duration) (*ServiceStandIn, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &ServiceStandIn{
		Addr: l.Addr().String(), probe: probe, endpointLag: endpointLag, listener: l,
		// The kubelet's prober: a fresh connection for each probe, timeoutSeconds 1 (the default).
		client:    &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		endpoints: map[string]*endpoint{},
		conns:     map[net.Conn]struct{}{},
		stats:     StandInStats{Routed: map[string]int{}},
	}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// SetEndpointLag changes how long a readiness change takes to reach the
// routing, from now on.
func (s *ServiceStandIn) SetEndpointLag(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpointLag = d
}

// Add makes a new endpoint name (a Pod) at addr, probed at readyURL (the base
// URL of its probe port): unready until its first probe passes.
func (s *ServiceStandIn) Add(name, addr, readyURL string) {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	if old, ok := s.endpoints[name]; ok {
		old.cancel()
	}
	e := &endpoint{addr: addr, readyURL: readyURL + s.probe.Path, cancel: cancel}
	s.endpoints[name] = e
	s.mu.Unlock()
	s.wg.Add(1)
	go s.probeLoop(ctx, name, e)
}

// Delete removes endpoint name as deleting its Pod does: the endpoints
// controller and kube-proxy stop sending new connections there EndpointLag
// later, whatever its probe says, while the kubelet signals the process at
// once; established connections stay until a side closes them.
func (s *ServiceStandIn) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.endpoints[name]
	if !ok || e.deleted {
		return
	}
	e.cancel()
	e.deleted, e.probed = true, false
	time.AfterFunc(s.endpointLag, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.endpoints[name] == e {
			delete(s.endpoints, name)
		}
	})
}

// Ready lists the endpoints that new connections may go to, sorted.
func (s *ServiceStandIn) Ready() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.routedLocked()
	sort.Strings(out)
	return out
}

// routedLocked lists the endpoints new connections may go to; s.mu is held.
func (s *ServiceStandIn) routedLocked() []string {
	var out []string
	for name, e := range s.endpoints {
		if e.routed {
			out = append(out, name)
		}
	}
	return out
}

// Stats returns a copy of the counts so far.
func (s *ServiceStandIn) Stats() StandInStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.stats
	out.Routed = make(map[string]int, len(s.stats.Routed))
	for k, v := range s.stats.Routed {
		out.Routed[k] = v
	}
	return out
}

// Close stops listening and probing and cuts every connection.
func (s *ServiceStandIn) Close() error {
	s.mu.Lock()
	s.closed = true
	for _, e := range s.endpoints {
		e.cancel()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	err := s.listener.Close()
	s.wg.Wait()
	return err
}

func (s *ServiceStandIn) probeLoop(ctx context.Context, name string, e *endpoint) {
	defer s.wg.Done()
	for {
		ok := s.probeOnce(ctx, e.readyURL)
		s.mu.Lock()
		if e.deleted {
			s.mu.Unlock()
			return
		}
		was := e.probed
		if ok {
			e.failures, e.probed = 0, true
		} else if e.failures++; e.failures >= s.probe.FailureThreshold {
			e.probed = false
		}
		if e.probed != was {
			now, lag := e.probed, s.endpointLag
			time.AfterFunc(lag, func() { s.route(name, e, now) })
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.probe.Period):
		}
	}
}

// route applies a readiness change to the routing, unless the endpoint was
// removed or changed back meanwhile.
func (s *ServiceStandIn) route(name string, e *endpoint, ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.endpoints[name] == e && e.probed == ready {
		e.routed = ready
	}
}

func (s *ServiceStandIn) probeOnce(ctx context.Context, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	// The kubelet counts 200-399 as success.
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

func (s *ServiceStandIn) serve() {
	defer s.wg.Done()
	for {
		c, err := s.listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.wg.Add(1)
		go s.forward(c)
	}
}

// pick chooses a routed endpoint at random and counts the connection.
func (s *ServiceStandIn) pick() (string, string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := s.routedLocked()
	if len(names) == 0 {
		s.stats.NoEndpoint++
		return "", "", false
	}
	name := names[rand.IntN(len(names))]
	s.stats.Routed[name]++
	return name, s.endpoints[name].addr, true
}

func (s *ServiceStandIn) track(c net.Conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

func (s *ServiceStandIn) forward(client net.Conn) {
	defer s.wg.Done()
	defer client.Close()
	_, addr, ok := s.pick()
	if !ok || !s.track(client, true) {
		return
	}
	defer s.track(client, false)
	backend, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		s.mu.Lock()
		s.stats.Refused++
		s.mu.Unlock()
		return
	}
	if !s.track(backend, true) {
		_ = backend.Close()
		return
	}
	defer s.track(backend, false)
	defer backend.Close()
	// Both directions until either side closes; then the other is closed
	// too, as a TCP proxy in the middle of HTTP/1.1 has nothing to keep.
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(backend, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, backend); done <- struct{}{} }()
	<-done
	_ = client.Close()
	_ = backend.Close()
	<-done
}
