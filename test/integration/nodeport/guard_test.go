package nodeport_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/svcguard/svcguard/pkg/fixtures"
	"github.com/svcguard/svcguard/pkg/testenv"
	"github.com/svcguard/svcguard/webhook/nodeport"
)

func setNodePort(n int32) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Ports[0].NodePort = n }
}

// TestEnvtestReplaysTheIncident replays the istio-ingressgateway incident
// through the real API server, step by step.
func TestEnvtestReplaysTheIncident(t *testing.T) {
	ctx := context.Background()
	c, w := suite.Env.ClientWithWarnings(t)
	const ns, name = "istio-ingress", "istio-ingressgateway"
	_, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	t.Cleanup(func() { suite.Env.EmptyNamespace(t, ns) }) // the name is part of the incident: keep it

	other := suite.Env.Namespace(t, nil)

	t.Run("a second Service asking for the pinned 30445 while it is free is denied", func(t *testing.T) {
		_, err := c.CoreV1().Services(other).Create(ctx, fixtures.Service(other, "intruder", fixtures.Port("http", 443, 30445)), metav1.CreateOptions{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), `denied the request: `+other+`/intruder: port "http" nodePort 30445 denied: 30445 is pinned to istio-ingress/istio-ingressgateway:tcp`)
	})

	t.Run("the gateway takes its pinned nodePort", func(t *testing.T) {
		_, err := c.CoreV1().Services(ns).Create(ctx, fixtures.Service(ns, name, fixtures.Port("tcp", 443, 30445)), metav1.CreateOptions{})
		require.NoError(t, err)
	})

	t.Run("the API server's own 'already allocated' error is untouched", func(t *testing.T) {
		_, err := c.CoreV1().Services(other).Create(ctx, fixtures.Service(other, "late", fixtures.Port("http", 443, 30445)), metav1.CreateOptions{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "provided port is already allocated")
		assert.NotContains(t, err.Error(), "svcguard")
	})

	t.Run("moving 30445 to 30194 is denied with the full explanation and nothing is stored", func(t *testing.T) {
		want := `istio-ingress/istio-ingressgateway: port "tcp" nodePort 30445 -> 30194 denied: 30445 is correctly allocated ` +
			`(in range 30000-32767, not reserved, pinned to this port, no hostPort); set annotation svcguard.io/allow-node-port-reassignment=true to force`
		// Until the caches are synced the denial says "hostPorts not checked yet"; wait for the full one.
		require.Eventually(t, func() bool {
			_, err := testenv.UpdateService(ctx, c, ns, name, true, setNodePort(30194))
			return err != nil && strings.Contains(err.Error(), want)
		}, 30*time.Second, 200*time.Millisecond, "expected the denial %q", want)
		_, err := testenv.UpdateService(ctx, c, ns, name, false, setNodePort(30194))
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
		stored, err := c.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		assert.EqualValues(t, 30445, stored.Spec.Ports[0].NodePort, "the stored Service keeps its nodePort")
	})

	t.Run("renaming the port without a nodePort, which makes the API server re-allocate, is denied", func(t *testing.T) {
		_, err := testenv.UpdateService(ctx, c, ns, name, false, func(s *corev1.Service) { s.Spec.Ports[0].Name, s.Spec.Ports[0].NodePort = "https", 0 })
		require.Error(t, err)
		assert.Contains(t, err.Error(), `port "https" nodePort 30445 -> `)
	})

	t.Run("an update that merely omits the nodePort keeps 30445 and is allowed", func(t *testing.T) {
		updated, err := testenv.UpdateService(ctx, c, ns, name, false, setNodePort(0))
		require.NoError(t, err)
		assert.EqualValues(t, 30445, updated.Spec.Ports[0].NodePort)
		assert.Empty(t, w.Take(), "no warning for an unchanged nodePort")
	})

	t.Run("the same move with the override annotation succeeds with a warning", func(t *testing.T) {
		updated, err := testenv.UpdateService(ctx, c, ns, name, false, func(s *corev1.Service) {
			s.Annotations = map[string]string{nodeport.AllowAnnotation: "true"}
			s.Spec.Ports[0].NodePort = 30194
		})
		require.NoError(t, err)
		assert.EqualValues(t, 30194, updated.Spec.Ports[0].NodePort)
		assert.Contains(t, strings.Join(w.Take(), "\n"), "forced by annotation svcguard.io/allow-node-port-reassignment")
	})

	t.Run("changing the type to ClusterIP is allowed with a warning naming the released nodePort", func(t *testing.T) {
		updated, err := testenv.UpdateService(ctx, c, ns, name, false, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeClusterIP })
		require.NoError(t, err)
		assert.EqualValues(t, 0, updated.Spec.Ports[0].NodePort)
		assert.Contains(t, w.Take(), "svcguard: istio-ingress/istio-ingressgateway releases nodePort 30194")
	})
}

// TestEnvtestNodePortCollidingWithHostPortMayBeMovedOff proves rule 5
// through the real API server and the Pod cache.
func TestEnvtestNodePortCollidingWithHostPortMayBeMovedOff(t *testing.T) {
	ctx := context.Background()
	c, w := suite.Env.ClientWithWarnings(t)
	ns := suite.Env.Namespace(t, nil)
	_, err := c.CoreV1().Services(ns).Create(ctx, fixtures.Service(ns, "metrics", fixtures.Port("http", 443, 31777)), metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.CoreV1().Pods(ns).Create(ctx, fixtures.Pod(ns, "node-exporter",
		fixtures.Container("exporter", "node-exporter"), fixtures.ContainerPort(9100, 31777)), metav1.CreateOptions{})
	require.NoError(t, err)

	// The Pod reaches the cache through a watch: wait until a dry run sees it.
	require.Eventually(t, func() bool {
		_, err := testenv.UpdateService(ctx, c, ns, "metrics", true, setNodePort(31778))
		return err == nil
	}, 30*time.Second, 200*time.Millisecond, "moving a nodePort off a Pod's hostPort must become allowed")
	w.Take()
	updated, err := testenv.UpdateService(ctx, c, ns, "metrics", false, setNodePort(31778))
	require.NoError(t, err)
	assert.EqualValues(t, 31778, updated.Spec.Ports[0].NodePort)
	// The namespace's long generated name makes the warning reach its 120-character cut.
	assert.Contains(t, strings.Join(w.Take(), "\n"), `port "http" nodePort 31777 -> 31778 allowed: 31777 was hostPort of Pod `)
}

// TestEnvtestTenantCannotCancelAPin replays issue #10, item 1, through the
// real API server: a tenant's ClusterIP Service in another namespace whose
// annotation names a nodePort flag-pinned to default/pinned used to be
// admitted, and from then on the pin's owner could move its nodePort
// 30446 -> 30500 (the port counted as "pinned to another Service"). An
// annotation pin is a claim: it is denied, naming the holder, and the move
// stays denied.
func TestEnvtestTenantCannotCancelAPin(t *testing.T) {
	ctx := context.Background()
	c, _ := suite.Env.ClientWithWarnings(t)
	const owner = "pinned"
	_, err := c.CoreV1().Services("default").Create(ctx, fixtures.Service("default", owner, fixtures.Port("http", 443, 30446)), metav1.CreateOptions{})
	require.NoError(t, err, "the pin's owner takes its flag-pinned nodePort")
	t.Cleanup(func() { _ = c.CoreV1().Services("default").Delete(context.Background(), owner, metav1.DeleteOptions{}) })
	tenant := suite.Env.Namespace(t, nil)

	t.Run("a tenant's ClusterIP Service pinning the flag-pinned 30446 by annotation is denied, naming the holder", func(t *testing.T) {
		squatter := fixtures.Service(tenant, "squatter", fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Port("http", 80, 0), fixtures.Annotation(nodeport.PinAnnotation, "http=30446"))
		_, err := c.CoreV1().Services(tenant).Create(ctx, squatter, metav1.CreateOptions{})
		require.Error(t, err, "the exploit: the annotation pin must not be admitted")
		assert.Contains(t, err.Error(), tenant+`/squatter: annotation svcguard.io/pinned-node-ports pin http=30446 denied: 30446 is pinned to default/pinned:http by --pinned-node-ports; `+
			`pin a nodePort that is in range, not reserved, not pinned and not held by another Service, or ask a node-port admin (--node-port-admins)`)
	})

	t.Run("the allow annotation does not let a tenant take a flag-pinned nodePort its owner does not hold", func(t *testing.T) {
		grab := fixtures.Service(tenant, "grab", fixtures.Port("http", 80, 30445), fixtures.Annotation(nodeport.AllowAnnotation, "true"))
		_, err := c.CoreV1().Services(tenant).Create(ctx, grab, metav1.CreateOptions{})
		require.Error(t, err, "while the gateway is away, 30445 is still its own")
		assert.Contains(t, err.Error(), tenant+`/grab: port "http" nodePort 30445 denied: 30445 is pinned to istio-ingress/istio-ingressgateway:tcp; `+
			`choose another nodePort (or leave it to the API server), or ask a node-port admin (--node-port-admins)`)
	})

	t.Run("the pin's owner still may not move 30446 -> 30500", func(t *testing.T) {
		want := `default/pinned: port "http" nodePort 30446 -> 30500 denied: 30446 is correctly allocated ` +
			`(in range 30000-32767, not reserved, pinned to this port, no hostPort)`
		// "no hostPort": the caches are synced, so every annotation pin in the cluster was weighed.
		require.Eventually(t, func() bool {
			_, err := testenv.UpdateService(ctx, c, "default", owner, true, setNodePort(30500))
			return err != nil && strings.Contains(err.Error(), want)
		}, 30*time.Second, 200*time.Millisecond, "expected the denial %q", want)
		_, err := testenv.UpdateService(ctx, c, "default", owner, false, setNodePort(30500))
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
		stored, err := c.CoreV1().Services("default").Get(ctx, owner, metav1.GetOptions{})
		require.NoError(t, err)
		assert.EqualValues(t, 30446, stored.Spec.Ports[0].NodePort, "the pin's owner keeps 30446")
	})

	t.Run("an annotation pin on a nodePort another Service holds is denied, naming the holder", func(t *testing.T) {
		holderNS := suite.Env.Namespace(t, nil)
		_, err := c.CoreV1().Services(holderNS).Create(ctx, fixtures.Service(holderNS, "holder", fixtures.Port("web", 443, 31446)), metav1.CreateOptions{})
		require.NoError(t, err)
		grabber := fixtures.Service(tenant, "grabber", fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Port("http", 80, 0), fixtures.Annotation(nodeport.PinAnnotation, "http=31446"))
		want := tenant + `/grabber: annotation svcguard.io/pinned-node-ports pin http=31446 denied: 31446 is held by ` + holderNS + `/holder:web`
		// The holder reaches the guard's cache through a watch.
		require.Eventually(t, func() bool {
			_, err := c.CoreV1().Services(tenant).Create(ctx, grabber, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err != nil && strings.Contains(err.Error(), want)
		}, 30*time.Second, 200*time.Millisecond, "expected the denial %q", want)
		_, err = c.CoreV1().Services(tenant).Create(ctx, grabber, metav1.CreateOptions{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
	})

	t.Run("a ClusterIP Service's pin fences off nothing, and is judged when the Service starts allocating nodePorts", func(t *testing.T) {
		dormant := fixtures.Service(tenant, "dormant", fixtures.Type(corev1.ServiceTypeClusterIP), fixtures.Port("http", 80, 0), fixtures.Annotation(nodeport.PinAnnotation, "http=31449"))
		_, err := c.CoreV1().Services(tenant).Create(ctx, dormant, metav1.CreateOptions{})
		require.NoError(t, err, "31449 is free: a fine claim")
		other := suite.Env.Namespace(t, nil)
		_, err = c.CoreV1().Services(other).Create(ctx, fixtures.Service(other, "user", fixtures.Port("web", 443, 31449)), metav1.CreateOptions{})
		require.NoError(t, err, "a pin on a Service without nodePorts must not keep 31449 from whoever allocates it: it would cost the tenant no nodePort quota")
		want := tenant + `/dormant: annotation svcguard.io/pinned-node-ports pin http=31449 denied: 31449 is held by ` + other + `/user:web`
		require.Eventually(t, func() bool {
			_, err := testenv.UpdateService(ctx, c, tenant, "dormant", true, func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort })
			return err != nil && strings.Contains(err.Error(), want)
		}, 30*time.Second, 200*time.Millisecond, "expected the denial %q", want)
	})

	t.Run("an annotation pin on a nodePort another Service's annotation pins is denied, naming that pin", func(t *testing.T) {
		first := fixtures.Service(tenant, "first", fixtures.Port("http", 80, 0), fixtures.Annotation(nodeport.PinAnnotation, "http=31447"))
		_, err := c.CoreV1().Services(tenant).Create(ctx, first, metav1.CreateOptions{})
		require.NoError(t, err, "a pin on a free nodePort is a fine claim")
		other := suite.Env.Namespace(t, nil)
		second := fixtures.Service(other, "second", fixtures.Port("http", 80, 0), fixtures.Annotation(nodeport.PinAnnotation, "http=31447"))
		want := other + `/second: annotation svcguard.io/pinned-node-ports pin http=31447 denied: 31447 is pinned to ` + tenant + `/first:http by annotation`
		require.Eventually(t, func() bool {
			_, err := c.CoreV1().Services(other).Create(ctx, second, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			return err != nil && strings.Contains(err.Error(), want)
		}, 30*time.Second, 200*time.Millisecond, "expected the denial %q", want)
	})
}
