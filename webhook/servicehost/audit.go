package servicehost

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"

	"github.com/svcguard/svcguard/pkg/audit"
	"github.com/svcguard/svcguard/pkg/metrics"
	"github.com/svcguard/svcguard/pkg/podwatch"
	"github.com/svcguard/svcguard/pkg/slim"
)

// Event reasons the audit writes.
const (
	MissedReason     = "ServiceHostNotInjected"
	RemediatedReason = "ServiceHostRemediation"
	// BlockedReason: a PodDisruptionBudget refused the eviction of a missed
	// Pod; the audit tries again on later passes.
	BlockedReason = "ServiceHostRemediationBlocked"
)

// auditedPod is all the audit keeps of a Pod that Missed would report
// unless its namespace opted out (of any other Pod it keeps nothing): its
// creation time, controller kind and the facts Missed needs (the
// namespace's opt-out is looked up when judging, as it can change after the
// Pod). The Pod's key is its podwatch.Record's.
type auditedPod struct {
	created int64 // Unix seconds
	owner   OwnerKind
	facts   podFacts
}

// podFacts packs the Pod's own PodFacts into one byte.
type podFacts uint8

const (
	factOptedOut podFacts = 1 << iota
	factSetsServiceVar
	factFinished
	factMirror
)

func (f podFacts) with(namespaceOptedOut bool) PodFacts {
	return PodFacts{
		OptedOut:          f&factOptedOut != 0,
		NamespaceOptedOut: namespaceOptedOut,
		SetsServiceVar:    f&factSetsServiceVar != 0,
		Finished:          f&factFinished != 0,
		Mirror:            f&factMirror != 0,
	}
}

// auditedNamespace keeps a Namespace's name and opt-out.
type auditedNamespace struct {
	slim.Key
	optedOut bool
}

// candidateIndex indexes the Pods the audit keeps (candidates), so that a
// pass reads those only, never all Pods.
const candidateIndex = "missedCandidate"

// auditTransforms turn API objects into what the audit keeps.
type auditTransforms struct{ names slim.Interner }

// pod keeps what the audit needs of a candidate; nil for any other Pod.
func (t *auditTransforms) pod(pod *corev1.Pod) *auditedPod {
	var facts podFacts
	if OptedOut(pod.Labels) {
		facts |= factOptedOut
	}
	if SetsServiceVar(pod) {
		facts |= factSetsServiceVar
	}
	// A finished or terminating Pod runs no new clients: nothing to report or evict.
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil {
		facts |= factFinished
	}
	if _, ok := pod.Annotations[corev1.MirrorPodAnnotationKey]; ok {
		facts |= factMirror
	}
	if !Missed(facts.with(false)) {
		return nil
	}
	return &auditedPod{created: pod.CreationTimestamp.Unix(), owner: OwnerKindOf(pod), facts: facts}
}

func (t *auditTransforms) namespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &auditedNamespace{Key: slim.Key{Name: t.names.Intern(ns.Name)}, optedOut: OptedOut(ns.Labels)}, nil
}

// candidateKeys indexes every candidate under one key.
func candidateKeys(*auditedPod) []string {
	return []string{"yes"}
}

// registerCandidates registers the audit's part of pods and its index.
func registerCandidates(pods *podwatch.Watch, t *auditTransforms) (podwatch.Part[auditedPod], error) {
	part, err := podwatch.Register(pods, Name+"-audit", t.pod)
	if err != nil {
		return part, fmt.Errorf("missed-injection audit: %w", err)
	}
	if err := part.Index(candidateIndex, candidateKeys); err != nil {
		return part, fmt.Errorf("missed-injection audit: pod cache: %w", err)
	}
	return part, nil
}

// AuditOptions configure the missed-injection audit.
type AuditOptions struct {
	// Interval is the time between passes.
	Interval time.Duration
	// Remediate evicts missed Pods that a ReplicaSet, StatefulSet or
	// DaemonSet controls, at most RatePerMinute per minute.
	Remediate     bool
	RatePerMinute int
	// OwnNamespace is svcguard's namespace, never remediated.
	OwnNamespace string
	// ReportsPerPass caps the Events (and the reads behind them) of one
	// pass; the rest are reported on later passes. Installing svcguard in a
	// cluster finds every existing Pod missed at once; 0 means 100.
	ReportsPerPass int
}

// Audit finds Pods that the webhook missed, reports each with an Event, a
// log line and svcguard_pods_missing_service_host, and, with remediation on,
// evicts the ones their controller will re-create. It runs on the leader.
type Audit struct {
	opts     AuditOptions
	client   kubernetes.Interface
	recorder events.EventRecorder
	log      logr.Logger
	limiter  *rate.Limiter

	pods       podwatch.Part[auditedPod]
	namespaces cache.SharedIndexInformer
	// reported holds the keys already given an Event this term, so that each
	// missed Pod is reported once, not once per pass.
	reported map[string]bool
	// blocked holds the keys whose refused eviction got an Event this term.
	blocked map[string]bool
}

// NewAudit registers the audit's part of pods, the replica's shared Pod
// watch, and builds its Namespace informer on client.
func NewAudit(client kubernetes.Interface, pods *podwatch.Watch, recorder events.EventRecorder, opts AuditOptions, log logr.Logger) (*Audit, error) {
	t := &auditTransforms{}
	part, err := registerCandidates(pods, t)
	if err != nil {
		return nil, err
	}
	namespaces := cache.NewSharedIndexInformer(
		cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "namespaces", metav1.NamespaceAll, fields.Everything()),
		&corev1.Namespace{}, 0, cache.Indexers{})
	if err := namespaces.SetTransform(t.namespace); err != nil {
		return nil, fmt.Errorf("missed-injection audit: namespace cache: %w", err)
	}
	burst := max(1, opts.RatePerMinute)
	if opts.ReportsPerPass <= 0 {
		opts.ReportsPerPass = 100
	}
	return &Audit{
		opts: opts, client: client, recorder: recorder, log: log,
		limiter: rate.NewLimiter(rate.Limit(float64(opts.RatePerMinute)/60), burst),
		pods:    part, namespaces: namespaces,
	}, nil
}

// Start runs passes every interval until ctx (the leader's term) ends.
func (a *Audit) Start(ctx context.Context) error {
	defer metrics.PodsMissingServiceHost.Set(0) // only the leader reports
	// The Pod watch runs on every replica; the Namespace informer for the term.
	go a.namespaces.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), a.pods.Synced, a.namespaces.HasSynced) {
		return nil // the term ended first
	}
	a.reported, a.blocked = map[string]bool{}, map[string]bool{}
	audit.Passes(ctx, a.opts.Interval, nil, a.pass)
	return nil
}

// pass judges every candidate once.
func (a *Audit) pass(ctx context.Context) {
	type candidate struct {
		r *podwatch.Record
		p *auditedPod
	}
	var candidates []candidate
	if err := a.pods.ByIndex(candidateIndex, "yes", func(r *podwatch.Record, p *auditedPod) {
		candidates = append(candidates, candidate{r, p})
	}); err != nil {
		a.log.Error(err, "missed-injection audit cannot read its cache")
		return
	}
	missing, reportsLeft, deferred := 0, a.opts.ReportsPerPass, 0
	// Eviction attempts, made or refused, per pass: Pods a budget holds are tried again on every pass,
	// and must not cost unbounded API calls.
	attemptsLeft := max(10, a.opts.RatePerMinute)
	seen := make(map[string]bool, len(candidates))
	for _, c := range candidates {
		r, p := c.r, c.p
		if !Missed(p.facts.with(a.namespaceOptedOut(r.Namespace()))) {
			continue
		}
		missing++
		key := r.Key()
		seen[key] = true
		switch {
		case a.reported[key]:
		case reportsLeft == 0:
			deferred++
		default:
			reportsLeft--
			if a.report(ctx, r, p) {
				a.reported[key] = true
			}
		}
		// Evict only what was reported: every eviction follows its Event. The rate counts evictions
		// made: one a budget refused gives its turn back, so that a held Pod cannot starve the others.
		// (A reservation cannot be given back once due, so the token is taken after the eviction.)
		if a.reported[key] && a.opts.Remediate && Remediable(p.owner, r.Namespace(), a.opts.OwnNamespace) &&
			attemptsLeft > 0 && a.limiter.Tokens() >= 1 {
			attemptsLeft--
			if a.remediate(ctx, r) {
				a.limiter.Allow()
			}
		}
	}
	for key := range a.reported {
		if !seen[key] {
			delete(a.reported, key)
			delete(a.blocked, key)
		}
	}
	metrics.PodsMissingServiceHost.Set(float64(missing))
	if deferred > 0 {
		a.log.Info("more missed Pods than Events per pass: the rest are reported on the next passes",
			"missed", missing, "notReportedYet", deferred, "eventsPerPass", a.opts.ReportsPerPass)
	}
}

func (a *Audit) namespaceOptedOut(name string) bool {
	obj, ok, _ := a.namespaces.GetIndexer().GetByKey(name)
	return ok && obj.(*auditedNamespace).optedOut
}

// fresh reads the Pod from the API server and confirms it is still missed:
// Events and evictions act on the live object, never on a stale cache.
func (a *Audit) fresh(ctx context.Context, p *podwatch.Record) (*corev1.Pod, bool) {
	pod, err := a.client.CoreV1().Pods(p.Namespace()).Get(ctx, p.Name(), metav1.GetOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			a.log.Error(err, "missed-injection audit cannot read the Pod", "pod", p.Key())
		}
		return nil, false
	}
	return pod, !SetsServiceVar(pod) && !OptedOut(pod.Labels)
}

func (a *Audit) report(ctx context.Context, r *podwatch.Record, p *auditedPod) bool {
	pod, missed := a.fresh(ctx, r)
	if !missed {
		return false
	}
	remedy := "delete it so that it is re-created injected"
	if Remediable(p.owner, r.Namespace(), a.opts.OwnNamespace) {
		if a.opts.Remediate {
			remedy = "svcguard evicts it (--remediate-missed-pods) so that its controller re-creates it injected"
		} else {
			remedy = "restart it (or turn on --remediate-missed-pods) so that its controller re-creates it injected"
		}
	}
	note := fmt.Sprintf("%s is not set in any container: the Pod was admitted while the service-host webhook could not answer "+
		"(or before svcguard was installed), so it reaches the API server through the kubernetes Service; %s", HostVar, remedy)
	a.recorder.Eventf(pod, nil, corev1.EventTypeWarning, MissedReason, "Audit", note)
	a.log.Info("Pod missed the service-host injection", "pod", r.Key(),
		"created", time.Unix(p.created, 0).UTC(), "remediable", Remediable(p.owner, r.Namespace(), a.opts.OwnNamespace))
	return true
}

// evictTimeout bounds one eviction call.
const evictTimeout = 10 * time.Second

// remediate evicts the Pod through the eviction API, so that
// PodDisruptionBudgets are honoured, and reports whether it did; a refused
// eviction is tried again on a later pass.
func (a *Audit) remediate(ctx context.Context, p *podwatch.Record) bool {
	pod, missed := a.fresh(ctx, p)
	if !missed || !Remediable(OwnerKindOf(pod), pod.Namespace, a.opts.OwnNamespace) {
		return false
	}
	// An eviction can wait on a budget the disruption controller has not judged yet: bound it, so one Pod
	// cannot hold up the pass.
	ctx, cancel := context.WithTimeout(ctx, evictTimeout)
	defer cancel()
	err := a.client.PolicyV1().Evictions(pod.Namespace).Evict(ctx, &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}},
	})
	switch {
	case err == nil:
		metrics.MissedPodsEvicted.Inc()
		a.recorder.Eventf(pod, nil, corev1.EventTypeNormal, RemediatedReason, "Evict",
			"evicted by svcguard so that its controller re-creates it with %s", HostVar)
		a.log.Info("evicted a Pod that missed the service-host injection", "pod", p.Key())
		return true
	case apierrors.IsTooManyRequests(err) && apierrors.HasStatusCause(err, policyv1.DisruptionBudgetCause):
		a.log.Info("eviction refused by a PodDisruptionBudget; trying again on a later pass", "pod", p.Key(), "reason", err.Error())
		// Once a term on the Pod too, where its owner looks: the budget, not svcguard, keeps it as it is.
		if !a.blocked[p.Key()] {
			a.blocked[p.Key()] = true
			a.recorder.Eventf(pod, nil, corev1.EventTypeWarning, BlockedReason, "Evict",
				"svcguard cannot evict it yet (%v); it tries again every audit pass, or delete the Pod yourself", err)
		}
	case apierrors.IsTooManyRequests(err):
		a.log.Info("eviction throttled by the API server; trying again on a later pass", "pod", p.Key(), "reason", err.Error())
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		// Gone or replaced meanwhile: nothing to do.
	default:
		a.log.Error(err, "cannot evict a Pod that missed the service-host injection", "pod", p.Key())
	}
	return false
}
