package podwatch

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/svcguard/svcguard/pkg/benchtest"
)

// labelled is what a test consumer keeps: one label's value.
type labelled struct{ app string }

// appOf keeps the app label; nil for a Pod without it.
func appOf(p *corev1.Pod) *labelled {
	if v, ok := p.Labels["app"]; ok {
		return &labelled{app: v}
	}
	return nil
}

// named keeps the Pod's name, for every Pod.
type named struct{ name string }

func nameOf(p *corev1.Pod) *named { return &named{name: p.Name} }

func pod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
}

func keys[T any](t *testing.T, visit func(func(*Record, *T))) []string {
	t.Helper()
	var out []string
	visit(func(r *Record, _ *T) { out = append(out, r.Key()) })
	return out
}

func TestEveryPartKeepsItsOwnProjectionOfOnePodInOneRecord(t *testing.T) {
	w := NewStore()
	apps, err := Register(w, "apps", appOf)
	require.NoError(t, err)
	names, err := Register(w, "names", nameOf)
	require.NoError(t, err)
	require.NoError(t, apps.Index("app", func(l *labelled) []string { return []string{l.app} }))

	require.NoError(t, w.Add(pod("shop", "web-1", map[string]string{"app": "web"})))
	require.NoError(t, w.Add(pod("shop", "job-1", nil)))
	require.NoError(t, w.Add(pod("other", "web-2", map[string]string{"app": "web"})))
	assert.Equal(t, 3, w.Len(), "one Record per Pod, whatever the number of parts")

	assert.ElementsMatch(t, []string{"shop/web-1", "other/web-2"}, keys(t, apps.Each), "a nil part is not visited")
	assert.ElementsMatch(t, []string{"shop/web-1", "shop/job-1", "other/web-2"}, keys(t, names.Each))
	assert.ElementsMatch(t, []string{"shop/web-1"}, keys(t, func(f func(*Record, *labelled)) { apps.InNamespace("shop", f) }),
		"the namespace index holds every Record; a part sees those it keeps something of")
	var byApp []string
	require.NoError(t, apps.ByIndex("app", "web", func(r *Record, l *labelled) { byApp = append(byApp, r.Key()+"="+l.app) }))
	assert.ElementsMatch(t, []string{"shop/web-1=web", "other/web-2=web"}, byApp)
	assert.Error(t, names.ByIndex("app", "web", func(*Record, *named) {}), "another part's index is not this part's")

	var got *Record
	names.Each(func(r *Record, n *named) {
		if n.name == "web-1" {
			got = r
		}
	})
	require.NotNil(t, got)
	assert.Equal(t, "shop", got.Namespace())
	assert.Equal(t, "web-1", got.Name())
	assert.Equal(t, "shop/web-1", got.String())
	assert.Equal(t, &labelled{app: "web"}, apps.Of(got))

	require.NoError(t, w.Delete(pod("shop", "web-1", nil)))
	assert.ElementsMatch(t, []string{"other/web-2"}, keys(t, apps.Each), "a deleted Pod leaves every part")
	require.NoError(t, apps.ByIndex("app", "web", func(r *Record, _ *labelled) { assert.Equal(t, "other/web-2", r.Key()) }))
}

func TestTheStoreKeysARecordByItsOwnStringNotACopy(t *testing.T) {
	w := NewStore()
	_, err := Register(w, "names", nameOf)
	require.NoError(t, err)
	require.NoError(t, w.Add(pod("shop", "web-1", nil)))
	r := w.store.items["shop"]["web-1"]
	require.NotNil(t, r)
	for name := range w.store.items["shop"] {
		key := unsafe.StringData(r.Key())
		at := uintptr(unsafe.Pointer(unsafe.StringData(name))) - uintptr(unsafe.Pointer(key))
		assert.Equal(t, uintptr(len("shop/")), at, "the map's key is the name inside the Record's own key string: the name is kept once")
	}
	var obj kruntime.Object = r
	assert.Same(t, r, obj.DeepCopyObject(), "a Record is a runtime.Object for client-go's checks, and never changes")
	m, err := meta.Accessor(r)
	require.NoError(t, err)
	assert.Equal(t, "shop/web-1", m.GetName())
	assert.Equal(t, "shop/web-1", string(m.GetUID()), "the key stands for the UID that client-go's consistency check sorts by")
}

func TestPartsAreFixedOnceTheWatchHoldsAPod(t *testing.T) {
	w := NewStore()
	apps, err := Register(w, "apps", appOf)
	require.NoError(t, err)
	_, err = Register(w, "apps", appOf)
	assert.ErrorContains(t, err, "a part named apps is already registered")
	assert.Equal(t, []string{"apps"}, w.Parts())
	require.NoError(t, w.Add(pod("shop", "web-1", nil)))

	_, err = Register(w, "late", nameOf)
	assert.ErrorContains(t, err, "late registers after the watch started")
	assert.ErrorContains(t, apps.Index("late", func(*labelled) []string { return nil }), "apps adds index late after the watch started")

	full := NewStore()
	for i := range MaxParts {
		_, err := Register(full, fmt.Sprintf("p%d", i), nameOf)
		require.NoError(t, err)
	}
	_, err = Register(full, "one-too-many", nameOf)
	assert.ErrorContains(t, err, fmt.Sprintf("would be part %d", MaxParts+1))
}

func TestAWatchWithoutPartsWatchesNothing(t *testing.T) {
	w := New(fake.NewClientset())
	assert.Empty(t, w.Parts())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	assert.NoError(t, w.Start(ctx), "Start returns at once: nobody reads Pods, so no watch is opened")
	_, err := Register(w, "late", nameOf)
	assert.ErrorContains(t, err, "registers after the watch started")

	assert.Error(t, NewStore().Start(ctx), "a store has no informer")
	assert.Error(t, w.Add(pod("a", "b", nil)), "a reflector's Watch is fed by the API server only")
}

func TestATombstoneKeepsTheRecordItCarries(t *testing.T) {
	w := NewStore()
	_, err := Register(w, "names", nameOf)
	require.NoError(t, err)
	require.NoError(t, w.Add(pod("shop", "web-1", nil)))
	r := w.store.list()[0]
	again, err := w.store.record(cache.DeletedFinalStateUnknown{Key: r.Key(), Obj: r})
	require.NoError(t, err)
	assert.Same(t, r, again, "a deleted-final-state tombstone carries its last Record, which passes unchanged")
	require.NoError(t, w.store.Delete(cache.DeletedFinalStateUnknown{Key: r.Key(), Obj: r}))
	assert.Zero(t, w.Len(), "and deletes it")
	_, err = w.store.record("a string")
	assert.ErrorContains(t, err, "handed over a string, not a Pod")
}

// BenchmarkRecordMemory is the watch's own cost per Pod: 100k Pods with
// one part that keeps nothing, so that what is held is the Record, its key
// and the store's and namespace index's entries.
func BenchmarkRecordMemory(b *testing.B) {
	const pods = 100_000
	for b.Loop() {
		before := benchtest.HeapAfterGC()
		w := NewStore()
		if _, err := Register(w, "nothing", func(*corev1.Pod) *named { return nil }); err != nil {
			b.Fatal(err)
		}
		for i := range pods {
			name := fmt.Sprintf("app-%d-7f9c8d6b5-%s", i/10, strings.Repeat("x", 5))
			if err := w.Add(pod(fmt.Sprintf("team-%d", i/1000), name+fmt.Sprint(i%10), nil)); err != nil {
				b.Fatal(err)
			}
		}
		held := benchtest.HeapAfterGC() - before
		b.ReportMetric(float64(held)/pods, "B/pod")
		runtime.KeepAlive(w)
	}
}

func TestAListReplacesEverythingTheStoreHeldAndMarksItSynced(t *testing.T) {
	w := New(fake.NewClientset())
	apps, err := Register(w, "apps", appOf)
	require.NoError(t, err)
	require.NoError(t, apps.Index("app", func(l *labelled) []string { return []string{l.app} }))
	assert.False(t, w.Synced(), "not synced before the first list")

	// What the reflector does: a list, then watch events, then (after a lost watch) a relist.
	require.NoError(t, w.store.Replace([]any{pod("shop", "web-1", map[string]string{"app": "web"}), pod("shop", "db-1", map[string]string{"app": "db"})}, "10"))
	assert.True(t, w.Synced(), "synced once the first list is in")
	require.NoError(t, w.store.Update(pod("shop", "web-1", map[string]string{"app": "api"})))
	require.NoError(t, apps.ByIndex("app", "web", func(r *Record, _ *labelled) { t.Errorf("%s is still indexed under its old label", r) }))
	assert.Equal(t, []string{"shop/web-1"}, keys(t, func(f func(*Record, *labelled)) { _ = apps.ByIndex("app", "api", f) }), "an update moves the Record in every index")

	require.NoError(t, w.store.Replace([]any{pod("shop", "db-1", map[string]string{"app": "db"}), pod("new", "cache-1", map[string]string{"app": "cache"})}, "20"))
	assert.ElementsMatch(t, []string{"shop/db-1", "new/cache-1"}, keys(t, apps.Each), "a Pod deleted while the watch was down is gone after the relist")
	assert.Empty(t, w.store.inNamespace("nobody"))
	assert.Len(t, w.store.inNamespace("shop"), 1)
	assert.NotContains(t, w.store.indices["apps/app"], "api", "an index keeps no value that no Record holds")
}
