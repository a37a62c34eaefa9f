// Package slim holds what svcguard's informer caches share to keep a cached
// object small: a key that client-go can index, a string interner for the
// few names repeated across many objects.
package slim

import (
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Key is an object's namespace and name. Embedded in a slim cached type, it
// makes that type a metav1.ObjectMetaAccessor, which is all client-go's key
// function needs.
type Key struct {
	Namespace, Name string
}

// GetObjectMeta implements metav1.ObjectMetaAccessor.
func (k *Key) GetObjectMeta() metav1.Object {
	return &metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}
}

// String is "namespace/name".
func (k Key) String() string {
	return k.Namespace + "/" + k.Name
}

// Interner shares one copy of each string it has seen: a cluster has few
// namespaces and many Pods, so interning saves a string per Pod. The zero
// value is ready to use.
type Interner struct {
	mu   sync.Mutex
	seen map[string]string
}

// Intern returns the shared copy of v.
func (s *Interner) Intern(v string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]string{}
	}
	if c, ok := s.seen[v]; ok {
		return c
	}
	s.seen[v] = v
	return v
}
