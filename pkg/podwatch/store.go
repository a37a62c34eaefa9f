package podwatch

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// set holds Records by pointer: 8 bytes a member where a set of keys holds
// a 16-byte string header.
type set map[*Record]struct{}

// index is one index: the Records under each value.
type index map[string]set

// recordStore is the reflector's store: Records by namespace and name, and
// by every part's indexes. It stands in for client-go's DeltaFIFO and
// indexer (there are no event handlers to feed), so that a Pod costs one
// map entry keyed by a slice of the Record's own string (the namespace's
// map is the namespace index too) and 8 bytes in each part's index, and
// the Pods the reflector hands over are dropped as soon as they are
// projected.
type recordStore struct {
	transform func(*corev1.Pod) *Record

	mu       sync.RWMutex
	items    map[string]map[string]*Record // namespace, name
	indexers map[string]func(*Record) []string
	indices  map[string]index
	synced   atomic.Bool
}

func newRecordStore(transform func(*corev1.Pod) *Record) *recordStore {
	return &recordStore{
		transform: transform,
		items:     map[string]map[string]*Record{},
		indexers:  map[string]func(*Record) []string{},
		indices:   map[string]index{},
	}
}

// record is obj as a Record: a Pod is projected; a Record (from the
// watch-list's temporary store) or a tombstone's Record passes as it is.
func (s *recordStore) record(obj any) (*Record, error) {
	switch o := obj.(type) {
	case *Record:
		return o, nil
	case *corev1.Pod:
		return s.transform(o), nil
	case cache.DeletedFinalStateUnknown:
		return s.record(o.Obj)
	}
	return nil, fmt.Errorf("pod watch: the reflector handed over a %T, not a Pod", obj)
}

// Transformer makes the reflector's watch-list keep Records, not Pods, while
// it streams the initial state (cache.TransformingStore).
func (s *recordStore) Transformer() cache.TransformFunc {
	return func(obj any) (any, error) { return s.record(obj) }
}

// addIndex adds an index; only before the store holds a Record.
func (s *recordStore) addIndex(name string, keys func(*Record) []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.indexers[name]; ok {
		return fmt.Errorf("pod watch: index %s is already added", name)
	}
	s.indexers[name] = keys
	s.indices[name] = index{}
	return nil
}

// Add implements cache.ReflectorStore.
func (s *recordStore) Add(obj any) error {
	r, err := s.record(obj)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(r)
	return nil
}

// Update implements cache.ReflectorStore.
func (s *recordStore) Update(obj any) error {
	return s.Add(obj)
}

// Delete implements cache.ReflectorStore. A deleted Pod is found by its
// name: projecting it would be work thrown away.
func (s *recordStore) Delete(obj any) error {
	var ns, name string
	if pod, ok := obj.(*corev1.Pod); ok {
		ns, name = pod.Namespace, pod.Name
	} else {
		r, err := s.record(obj)
		if err != nil {
			return err
		}
		ns, name = r.Namespace(), r.Name()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeLocked(ns, name)
	return nil
}

// Replace implements cache.ReflectorStore: the store holds list and nothing
// else, and is synced from then on.
func (s *recordStore) Replace(list []any, _ string) error {
	records := make([]*Record, 0, len(list))
	for i, obj := range list {
		r, err := s.record(obj)
		if err != nil {
			return err
		}
		records = append(records, r)
		list[i] = nil // the Pod can go now
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := make(map[string]struct{}, len(records))
	for _, r := range records {
		keep[r.key] = struct{}{}
	}
	for _, names := range s.items {
		for _, old := range names {
			if _, ok := keep[old.key]; !ok {
				s.removeLocked(old.Namespace(), old.Name())
			}
		}
	}
	for _, r := range records {
		s.putLocked(r)
	}
	s.synced.Store(true)
	return nil
}

// Resync implements cache.ReflectorStore; a store has nothing to resync.
func (s *recordStore) Resync() error {
	return nil
}

func (s *recordStore) putLocked(r *Record) {
	ns, name := r.Namespace(), r.Name()
	names, ok := s.items[ns]
	if !ok {
		names = map[string]*Record{}
		s.items[strings.Clone(ns)] = names // not a slice of this Pod's key, which would outlive it
	}
	if old, ok := names[name]; ok {
		s.unindexLocked(old)
	}
	names[name] = r
	for idx, keys := range s.indexers {
		for _, v := range keys(r) {
			add(s.indices[idx], v, r)
		}
	}
}

// removeLocked removes the Record of namespace ns named name.
func (s *recordStore) removeLocked(ns, name string) {
	names := s.items[ns]
	old, ok := names[name]
	if !ok {
		return
	}
	s.unindexLocked(old)
	delete(names, name)
	if len(names) == 0 {
		delete(s.items, ns)
	}
}

func (s *recordStore) unindexLocked(r *Record) {
	for idx, keys := range s.indexers {
		for _, v := range keys(r) {
			remove(s.indices[idx], v, r)
		}
	}
}

func add(idx index, value string, r *Record) {
	members, ok := idx[value]
	if !ok {
		members = set{}
		idx[value] = members
	}
	members[r] = struct{}{}
}

func remove(idx index, value string, r *Record) {
	members := idx[value]
	delete(members, r)
	if len(members) == 0 {
		delete(idx, value) // an index must not keep every value ever seen
	}
}

// byIndex returns the Records an index holds under value.
func (s *recordStore) byIndex(name, value string) ([]*Record, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx, ok := s.indices[name]
	if !ok {
		return nil, fmt.Errorf("pod watch: no index named %s", name)
	}
	return members(idx[value]), nil
}

// inNamespace returns the Records of namespace.
func (s *recordStore) inNamespace(namespace string) []*Record {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := s.items[namespace]
	out := make([]*Record, 0, len(names))
	for _, r := range names {
		out = append(out, r)
	}
	return out
}

// list returns every Record.
func (s *recordStore) list() []*Record {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Record
	for _, names := range s.items {
		for _, r := range names {
			out = append(out, r)
		}
	}
	return out
}

// len is how many Records the store holds.
func (s *recordStore) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, names := range s.items {
		n += len(names)
	}
	return n
}

// members copies a set out, so that callers run without the lock.
func members(m set) []*Record {
	out := make([]*Record, 0, len(m))
	for r := range m {
		out = append(out, r)
	}
	return out
}
