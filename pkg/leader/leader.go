// Package leader runs the work that must happen exactly once in a cluster
// (svcguard's audits) on the replica that holds a coordination.k8s.io Lease.
// Admission needs no leader: every replica serves webhooks whether or not it
// leads, so the election never touches the request path.
//
// Unlike controller-runtime's election, which exits the process when the
// lease is lost and holds the lease until the whole manager stops, the
// Elector stops only the leader's tasks when it loses the lease and tries
// again, and it releases the lease the moment shutdown begins (before the
// webhook drain), so that another replica takes over within a retry period,
// not a lease duration.
package leader

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/svcguard/svcguard/pkg/metrics"
)

// Options configure the election.
type Options struct {
	// Enabled turns the election on; off, this replica runs the tasks at once
	// (for a single replica, or local runs).
	Enabled bool
	// Namespace and Name locate the Lease.
	Namespace, Name string
	// LeaseDuration, RenewDeadline and RetryPeriod are client-go's election
	// timings.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Identity names this replica in the Lease; empty: hostname plus a
	// random suffix.
	Identity string
}

// Elector campaigns for the Lease and runs the tasks while it leads. It is a
// controller-runtime Runnable that every replica runs.
type Elector struct {
	opts   Options
	client kubernetes.Interface
	log    logr.Logger
	tasks  []manager.Runnable

	mu      sync.Mutex
	release context.CancelFunc
	leading bool
}

// New returns an elector; Add tasks before the manager starts.
func New(client kubernetes.Interface, opts Options, log logr.Logger) (*Elector, error) {
	if opts.Enabled && (opts.Namespace == "" || opts.Name == "") {
		return nil, fmt.Errorf("leader election needs a Lease namespace and name (got %q/%q): give --leader-election-namespace when running outside a cluster", opts.Namespace, opts.Name)
	}
	if opts.Identity == "" {
		host, _ := os.Hostname()
		opts.Identity = host + "_" + string(uuid.NewUUID())
	}
	return &Elector{opts: opts, client: client, log: log}, nil
}

// Add registers a task that runs only while this replica leads. Its context
// ends when leadership ends; it may be started again on a later term.
func (e *Elector) Add(task manager.Runnable) {
	e.tasks = append(e.tasks, task)
}

// Leading tells whether this replica leads now.
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// NeedLeaderElection tells controller-runtime to run the elector everywhere.
func (e *Elector) NeedLeaderElection() bool { return false }

// Start campaigns until ctx ends or Release is called.
func (e *Elector) Start(ctx context.Context) error {
	ctx, release := context.WithCancel(ctx)
	e.mu.Lock()
	e.release = release
	e.mu.Unlock()
	defer release()

	if !e.opts.Enabled {
		e.lead(ctx)
		return nil
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, e.opts.Namespace, e.opts.Name,
		e.client.CoreV1(), e.client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: e.opts.Identity})
	if err != nil {
		return fmt.Errorf("leader election lock: %w", err)
	}
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   e.opts.LeaseDuration,
		RenewDeadline:   e.opts.RenewDeadline,
		RetryPeriod:     e.opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.opts.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: e.lead,
			OnStoppedLeading: func() {},
			OnNewLeader: func(identity string) {
				if identity != e.opts.Identity {
					e.log.Info("another replica leads", "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	// Run returns when the lease is lost or ctx ends; a lost lease means
	// campaigning again, as one of the followers.
	for ctx.Err() == nil {
		elector.Run(ctx)
	}
	return nil
}

// lead runs every task until ctx (the term) ends.
func (e *Elector) lead(ctx context.Context) {
	e.setLeading(true)
	defer e.setLeading(false)
	e.log.Info("leading: starting the leader-only tasks", "identity", e.opts.Identity, "tasks", len(e.tasks))
	var wg sync.WaitGroup
	for _, t := range e.tasks {
		wg.Go(func() {
			if err := t.Start(ctx); err != nil {
				e.log.Error(err, "leader-only task stopped; it starts again on the next term")
			}
		})
	}
	wg.Wait()
	e.log.Info("no longer leading: the leader-only tasks stopped")
}

func (e *Elector) setLeading(v bool) {
	e.mu.Lock()
	e.leading = v
	e.mu.Unlock()
	if v {
		metrics.Leader.Set(1)
	} else {
		metrics.Leader.Set(0)
	}
}

// Release stops campaigning and gives the Lease up, so that another replica
// takes over at once; shutdown calls it first.
func (e *Elector) Release() {
	e.mu.Lock()
	release := e.release
	e.mu.Unlock()
	if release != nil {
		release()
	}
}
