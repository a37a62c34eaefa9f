// Package podwatch keeps one watch of every Pod per replica and one small
// record per Pod, holding what each consumer keeps of it (its part).
//
// Several of svcguard's caches read every Pod in the cluster (the node-port
// guard's hostPorts, the missed-injection audit, the service-path guard's
// labels and named ports). Each with its own informer, a replica would hold
// as many watches on the API server, decode every Pod event as many times,
// and keep as many keyed copies of every Pod. Here they register a
// projection each; the watch decodes a Pod once, runs every projection on
// it, and stores one Record whose parts point at what the projections
// returned.
//
// A Record is a few machine words: its "namespace/name" is the only copy of
// the name (the store's maps are keyed by slices of it); indexes hold
// Records by pointer; and a consumer that keeps nothing of a Pod (a nil
// part) costs one nil pointer.
package podwatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// MaxParts is how many consumers one Watch feeds: a Record holds this many
// parts inline, so that it is one allocation.
const MaxParts = 4

// Record is what the Watch keeps of one Pod: its key and each consumer's
// part. Read a part with Part.Of.
type Record struct {
	key   string // "namespace/name"; the store's key is this very string
	parts [MaxParts]unsafe.Pointer
}

// GetObjectMeta makes a Record a metav1.ObjectMetaAccessor, and
// DeepCopyObject and GetObjectKind a runtime.Object, which is what
// client-go's reflector may ask of what the store's Transformer returned
// (its watch-list consistency check, KUBE_WATCHLIST_INCONSISTENCY_DETECTOR,
// sorts and compares objects by these). The whole key stands for the name
// and the UID.
func (r *Record) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Name: r.key, UID: types.UID(r.key)}
}

// GetObjectKind implements runtime.Object: a Record has no kind.
func (r *Record) GetObjectKind() schema.ObjectKind {
	return schema.EmptyObjectKind
}

// DeepCopyObject implements runtime.Object. A Record never changes once
// made, so it is its own copy.
func (r *Record) DeepCopyObject() runtime.Object {
	return r
}

// Key is "namespace/name".
func (r *Record) Key() string {
	return r.key
}

// Namespace is the Pod's namespace.
func (r *Record) Namespace() string {
	ns, _, _ := strings.Cut(r.key, "/")
	return ns
}

// Name is the Pod's name.
func (r *Record) Name() string {
	_, name, _ := strings.Cut(r.key, "/")
	return name
}

// String is "namespace/name".
func (r *Record) String() string {
	return r.key
}

// Watch is one reflector over every Pod, feeding every registered part.
// Register every part before Start (or, for a Watch from NewStore, before
// the first Add); a Watch with no part registered starts nothing.
type Watch struct {
	mu          sync.Mutex
	projections []func(*corev1.Pod) unsafe.Pointer
	names       []string
	sealed      bool // projections are fixed once the store holds a Record

	store     *recordStore
	reflector *cache.Reflector // nil for a Watch from NewStore
}

// New returns a Watch of every Pod through client. Start runs it.
func New(client kubernetes.Interface) *Watch {
	w := &Watch{}
	w.store = newRecordStore(w.project)
	w.reflector = cache.NewReflectorWithOptions(
		cache.NewListWatchFromClient(client.CoreV1().RESTClient(), "pods", metav1.NamespaceAll, fields.Everything()),
		&corev1.Pod{}, w.store, cache.ReflectorOptions{Name: "svcguard pod watch", TypeDescription: "*v1.Pod"})
	return w
}

// NewStore returns a Watch with no API server behind it, always synced:
// Add and Delete feed it. Tests and benchmarks use it to run the very
// projections and indexes the reflector's store runs.
func NewStore() *Watch {
	w := &Watch{}
	w.store = newRecordStore(w.project)
	w.store.synced.Store(true)
	return w
}

// seal fixes the parts: Start seals before the reflector hands over a Pod,
// and Add before the first, so that project reads them without a lock.
func (w *Watch) seal() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sealed = true
}

// project turns a Pod into its Record; the parts are sealed by then.
func (w *Watch) project(pod *corev1.Pod) *Record {
	r := &Record{key: pod.Namespace + "/" + pod.Name}
	for i, project := range w.projections {
		r.parts[i] = project(pod)
	}
	return r
}

// Start runs the reflector until ctx ends, on every replica. Without a
// registered part it returns at once: nobody reads Pods.
func (w *Watch) Start(ctx context.Context) error {
	if w.reflector == nil {
		return errors.New("a Watch from NewStore has no reflector to start")
	}
	w.seal()
	if len(w.projections) == 0 {
		return nil
	}
	w.reflector.RunWithContext(ctx)
	return nil
}

// NeedLeaderElection implements controller-runtime's LeaderElectionRunnable:
// the watch runs on every replica, for the webhooks' decisions.
func (w *Watch) NeedLeaderElection() bool {
	return false
}

// Parts are the names of the registered parts, in their order.
func (w *Watch) Parts() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.names)
}

// Synced tells whether the store holds every Pod of the cluster: the
// reflector has handed over its first list.
func (w *Watch) Synced() bool {
	return w.store.synced.Load()
}

// Add stores pod's Record as the reflector would (NewStore's Watch only).
func (w *Watch) Add(pod *corev1.Pod) error {
	if w.reflector != nil {
		return errors.New("a reflector's Watch is fed by the API server, not by Add")
	}
	w.seal()
	return w.store.Add(pod)
}

// Delete removes pod's Record (NewStore's Watch only).
func (w *Watch) Delete(pod *corev1.Pod) error {
	if w.reflector != nil {
		return errors.New("a reflector's Watch is fed by the API server, not by Delete")
	}
	return w.store.Delete(pod)
}

// Len is how many Pods the store holds.
func (w *Watch) Len() int {
	return w.store.len()
}

// Part is one consumer's view of the Watch: what its projection keeps of
// each Pod, of type T.
type Part[T any] struct {
	w    *Watch
	slot int
	name string
}

// Register adds a consumer named name (it prefixes the consumer's index
// names) whose projection keeps a *T of each Pod; a nil *T keeps nothing,
// and such a Record is neither indexed nor visited for this part. project
// must not keep pod or any slice or map of it: the Pod is dropped after.
func Register[T any](w *Watch, name string, project func(*corev1.Pod) *T) (Part[T], error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.sealed:
		return Part[T]{}, fmt.Errorf("pod watch: %s registers after the watch started; register every part before Start", name)
	case len(w.projections) == MaxParts:
		return Part[T]{}, fmt.Errorf("pod watch: %s would be part %d; a Record holds %d (raise podwatch.MaxParts)", name, MaxParts+1, MaxParts)
	}
	for _, n := range w.names {
		if n == name {
			return Part[T]{}, fmt.Errorf("pod watch: a part named %s is already registered", name)
		}
	}
	// A part is stored untyped (8 bytes, where an interface takes 16) and read
	// back only by this Part[T], through Of, as the *T it was.
	w.projections = append(w.projections, func(pod *corev1.Pod) unsafe.Pointer {
		return unsafe.Pointer(project(pod)) //nolint:gosec // G103: converted back to *T by Part[T].Of only
	})
	w.names = append(w.names, name)
	return Part[T]{w: w, slot: len(w.projections) - 1, name: name}, nil
}

// Of returns what the part keeps of r; nil for nothing.
func (p Part[T]) Of(r *Record) *T {
	return (*T)(r.parts[p.slot])
}

// Synced tells whether the Watch holds every Pod of the cluster.
func (p Part[T]) Synced() bool {
	return p.w.Synced()
}

// Index adds an index over the part's non-nil values: keys returns the
// values a Record is found under. Add every index before Start.
func (p Part[T]) Index(name string, keys func(*T) []string) error {
	// Held across both steps, so that no Pod is projected between the check and the index.
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	if p.w.sealed {
		return fmt.Errorf("pod watch: %s adds index %s after the watch started; add every index before Start", p.name, name)
	}
	return p.w.store.addIndex(p.indexName(name), func(r *Record) []string {
		if v := p.Of(r); v != nil {
			return keys(v)
		}
		return nil
	})
}

func (p Part[T]) indexName(name string) string {
	return p.name + "/" + name
}

// ByIndex calls f for every Record the part's index name holds under
// value. An index the part never added is an error.
func (p Part[T]) ByIndex(name, value string, f func(*Record, *T)) error {
	records, err := p.w.store.byIndex(p.indexName(name), value)
	if err != nil {
		return err
	}
	p.each(records, f)
	return nil
}

// InNamespace calls f for every Record of namespace whose part is non-nil.
func (p Part[T]) InNamespace(namespace string, f func(*Record, *T)) {
	p.each(p.w.store.inNamespace(namespace), f)
}

// Each calls f for every Record whose part is non-nil.
func (p Part[T]) Each(f func(*Record, *T)) {
	p.each(p.w.store.list(), f)
}

func (p Part[T]) each(records []*Record, f func(*Record, *T)) {
	for _, r := range records {
		if v := p.Of(r); v != nil {
			f(r, v)
		}
	}
}
