package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Replica is one svcguard process of a Fleet: a Pod of the Deployment.
type Replica struct {
	*Process
	// Name is unique in the fleet's life ("svcguard-3").
	Name string
	// WebhookAddress is host:port of its own webhook listener.
	WebhookAddress string
	// CertDir is its serving certificate's secret volume.
	CertDir string
}

// podSpec is what a replica takes from the rendered Deployment.
type podSpec struct {
	namespace string
	container corev1.Container
	// configMaps are the rendered ConfigMaps' data by name, for env from
	// configMapKeyRef.
	configMaps map[string]map[string]string
	// volumes maps each mount path to the files the volume holds (a
	// ConfigMap's data); the certificate volume is empty: the fleet writes it.
	volumes map[string]map[string][]byte
	certDir string
	probe   Probe
}

// Fleet plays svcguard's Deployment with processes of the real binary, for a
// control plane that has no nodes. Each replica runs with the container's
// args, env and mounted config.yaml of the rendered manifests; only what a
// process cannot share changes: the listen addresses (free loopback ports),
// the mount paths (a directory per replica), --kubeconfig, and plain HTTP
// metrics so the harness reads them without a token. Its serving certificate
// is a secret volume written as the kubelet writes one. A ServiceStandIn on
// the environment's webhook address, where the registered configurations
// send the API server, routes to the replicas by the manifests' readiness
// probe.
type Fleet struct {
	// StandIn is the Service in front of the replicas.
	StandIn *ServiceStandIn

	env      *Environment
	binary   string
	overlay  string
	spec     podSpec
	dir      string
	log      io.Writer
	ca       func() (map[string][]byte, error)
	mu       sync.Mutex
	replicas []*Replica
	started  int
}

// FleetOptions say how to run the fleet.
type FleetOptions struct {
	// Binary is the svcguard binary; Overlay the install whose Deployment
	// and config.yaml the replicas take.
	Binary, Overlay string
	// Serving issues a serving certificate's files (tls.crt, tls.key) for a
	// new replica; the configurations' caBundle must trust it.
	Serving func() (map[string][]byte, error)
	// EndpointLag is the stand-in's delay between a probe's verdict and the
	// routing.
	EndpointLag time.Duration
	// Log receives every replica's output (may be nil).
	Log io.Writer
}

// StartFleet starts a fleet of replicas processes, each with extra flags
// after the manifests' own, and waits until the stand-in routes to all of
// them. It returns an error: a TestMain calls it.
func (e *Environment) StartFleet(ctx context.Context, opts FleetOptions, replicas int, extra ...string) (*Fleet, error) {
	spec, err := renderedPodSpec(opts.Overlay)
	if err != nil {
		return nil, err
	}
	if err := e.ensureNamespace(ctx, spec.namespace); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "svcguard-fleet-")
	if err != nil {
		return nil, err
	}
	standIn, err := NewServiceStandIn(e.WebhookBindAddress, spec.probe, opts.EndpointLag)
	if err != nil {
		return nil, fmt.Errorf("the Service stand-in cannot listen on the webhook address %s: %w", e.WebhookBindAddress, err)
	}
	f := &Fleet{StandIn: standIn, env: e, binary: opts.Binary, overlay: opts.Overlay, spec: spec, dir: dir, log: opts.Log, ca: opts.Serving}
	if err := f.StartN(ctx, replicas, extra...); err != nil {
		_ = f.Close()
		return nil, err
	}
	return f, nil
}

// renderedPodSpec reads the Deployment svcguard and its ConfigMaps from the
// rendered overlay.
func renderedPodSpec(overlay string) (podSpec, error) {
	objs, err := renderedOverlay(overlay)
	if err != nil {
		return podSpec{}, err
	}
	var d appsv1.Deployment
	if err := Find(objs, "Deployment", "svcguard", &d); err != nil {
		return podSpec{}, err
	}
	c := d.Spec.Template.Spec.Containers[0]
	configMaps, err := ConfigMapsOf(objs)
	if err != nil {
		return podSpec{}, err
	}
	spec := podSpec{namespace: d.Namespace, container: c, configMaps: configMaps, volumes: map[string]map[string][]byte{}}
	if p := c.ReadinessProbe; p != nil && p.HTTPGet != nil {
		spec.probe = Probe{Path: p.HTTPGet.Path, Period: time.Duration(p.PeriodSeconds) * time.Second, FailureThreshold: int(p.FailureThreshold)}
	} else {
		return podSpec{}, errors.New("the svcguard container has no HTTP readiness probe")
	}
	for _, m := range c.VolumeMounts {
		for _, v := range d.Spec.Template.Spec.Volumes {
			switch {
			case v.Name != m.Name:
			case v.ConfigMap != nil:
				files, err := configMapData(objs, v.ConfigMap.Name)
				if err != nil {
					return podSpec{}, err
				}
				spec.volumes[m.MountPath] = files
			case v.Secret != nil:
				spec.volumes[m.MountPath] = nil
				spec.certDir = m.MountPath
			}
		}
	}
	if spec.certDir == "" {
		return podSpec{}, errors.New("the svcguard container mounts no Secret for its serving certificate")
	}
	return spec, nil
}

func configMapData(objs []*unstructured.Unstructured, name string) (map[string][]byte, error) {
	var cm corev1.ConfigMap
	if err := Find(objs, "ConfigMap", name, &cm); err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	for k, v := range cm.Data {
		files[k] = []byte(v)
	}
	return files, nil
}

func (e *Environment) ensureNamespace(ctx context.Context, name string) error {
	err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// Start starts one more replica with extra flags (a Pod of a new revision
// when they differ), adds it to the stand-in's endpoints and waits until
// the stand-in routes to it: until then it gets no connection, as a Pod
// that is not ready.
func (f *Fleet) Start(ctx context.Context, extra ...string) (*Replica, error) {
	f.mu.Lock()
	f.started++
	name := fmt.Sprintf("svcguard-%d", f.started)
	f.mu.Unlock()
	root := filepath.Join(f.dir, name)
	resolved, err := ContainerEnv(f.spec.container, f.spec.namespace, name, f.spec.configMaps)
	if err != nil {
		return nil, err
	}
	args, env := ExpandArgs(f.spec.container.Args, resolved), []string{}
	for path, files := range f.spec.volumes {
		for file, data := range files {
			if err := os.MkdirAll(filepath.Join(root, path), 0o700); err != nil {
				return nil, err
			}
			if err := os.WriteFile(filepath.Join(root, path, file), data, 0o600); err != nil {
				return nil, err
			}
		}
	}
	certDir := filepath.Join(root, f.spec.certDir)
	files, err := f.issue()
	if err != nil {
		return nil, err
	}
	if err := WriteSecretVolume(certDir, files); err != nil {
		return nil, err
	}
	addrs := map[string]string{}
	var all []string
	for _, a := range args {
		flag, value, _ := strings.Cut(a, "=")
		switch {
		case strings.HasSuffix(flag, "-bind-address") && strings.HasPrefix(value, ":"):
			addr, err := FreeAddress()
			if err != nil {
				return nil, err
			}
			addrs[flag] = addr
			a = flag + "=" + addr
		case strings.HasPrefix(value, "/"):
			a = flag + "=" + filepath.Join(root, value)
		}
		all = append(all, a)
	}
	for _, flag := range []string{"--webhook-bind-address", "--health-probe-bind-address", "--metrics-bind-address"} {
		if addrs[flag] == "" {
			return nil, fmt.Errorf("the Deployment's args set no %s=:PORT", flag)
		}
	}
	all = append(all, "--kubeconfig="+f.env.Kubeconfig, "--metrics-secure=false")
	all = append(all, extra...)
	for _, v := range resolved {
		env = append(env, v.Name+"="+v.Value)
	}
	p, err := startProcess(f.binary, f.log, env, all...)
	if err != nil {
		return nil, err
	}
	p.HealthURL, p.MetricsURL = "http://"+addrs["--health-probe-bind-address"], "http://"+addrs["--metrics-bind-address"]
	r := &Replica{Process: p, Name: name, WebhookAddress: addrs["--webhook-bind-address"], CertDir: certDir}
	f.StandIn.Add(name, r.WebhookAddress, p.HealthURL)
	f.mu.Lock()
	f.replicas = append(f.replicas, r)
	f.mu.Unlock()
	if err := f.WaitRouted(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

// StartN starts n replicas at once, as a Deployment scaling up does, and
// waits until the stand-in routes to each.
func (f *Fleet) StartN(ctx context.Context, n int, extra ...string) error {
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := f.Start(ctx, extra...)
			errs <- err
		}()
	}
	var failed error
	for range n {
		failed = errors.Join(failed, <-errs)
	}
	return failed
}

// WaitRouted waits until the stand-in routes new connections to r.
func (f *Fleet) WaitRouted(ctx context.Context, r *Replica) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		for _, name := range f.StandIn.Ready() {
			if name == r.Name {
				return nil
			}
		}
		select {
		case <-r.exited:
			return fmt.Errorf("replica %s exited before it was ready: %v; its output:\n%s", r.Name, r.err, r.Output())
		case <-ctx.Done():
			_, body := r.Ready()
			return fmt.Errorf("replica %s never became routed; its /readyz:\n%s\nits output:\n%s", r.Name, body, r.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WaitSettled waits until the stand-in routes to exactly the running
// replicas: killed ones stay routed until their probe fails.
func (f *Fleet) WaitSettled(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		var want []string
		for _, r := range f.Replicas() {
			want = append(want, r.Name)
		}
		slices.Sort(want)
		got := f.StandIn.Ready()
		if slices.Equal(want, got) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the Service stand-in routes to %v, the running replicas are %v", got, want)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Replicas returns the running replicas, oldest first.
func (f *Fleet) Replicas() []*Replica {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Replica(nil), f.replicas...)
}

// Terminate deletes r's Pod: the kubelet sends SIGTERM, then SIGKILL after
// grace, while the endpoint leaves the stand-in's routing the endpoint lag
// later. It returns the exit code.
func (f *Fleet) Terminate(r *Replica, grace time.Duration) (int, error) {
	f.forget(r)
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	return r.Wait(grace)
}

// Kill ends r at once (SIGKILL: no release of the Lease, no drain), as the
// OOM killer or a crash does: nothing deletes its Pod, so the Service keeps
// routing to it until its readiness probe fails and the endpoint lag
// passed. (The harness then forgets it; a Deployment would restart it.)
func (f *Fleet) Kill(r *Replica) {
	r.Kill()
	f.remove(r)
	time.AfterFunc(f.spec.probe.Period*time.Duration(f.spec.probe.FailureThreshold), func() { f.StandIn.Delete(r.Name) })
}

// forget deletes r's Pod: its endpoint leaves the routing the lag later.
func (f *Fleet) forget(r *Replica) {
	f.StandIn.Delete(r.Name)
	f.remove(r)
}

func (f *Fleet) remove(r *Replica) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.replicas {
		if x == r {
			f.replicas = append(f.replicas[:i], f.replicas[i+1:]...)
			return
		}
	}
}

// RollingRestart replaces every replica as the Deployment's strategy
// (maxSurge 1, maxUnavailable 0) does: start a new replica with extra
// flags, wait until it is routed, SIGTERM one old replica, and go on
// without waiting for it to exit; then wait until every old one exited
// (within grace each). It returns the first failure.
func (f *Fleet) RollingRestart(ctx context.Context, grace time.Duration, extra ...string) error {
	old := f.Replicas()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, r := range old {
		if _, err := f.Start(ctx, extra...); err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			break
		}
		wg.Go(func() {
			if code, err := f.Terminate(r, grace); err != nil || code != 0 {
				mu.Lock()
				errs = append(errs, fmt.Errorf("replica %s did not stop cleanly within %s (exit %d, %v); its output:\n%s", r.Name, grace, code, err, r.Output()))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Leader returns the replica whose /metrics says it leads, or nil.
func (f *Fleet) Leader() *Replica {
	for _, r := range f.Replicas() {
		if text, err := r.Metrics(); err == nil && strings.Contains(text, "\nsvcguard_leader 1\n") {
			return r
		}
	}
	return nil
}

// RotateServing writes a new serving certificate into every replica's
// secret volume, as the kubelet does when cert-manager renews the Secret.
func (f *Fleet) RotateServing() error {
	for _, r := range f.Replicas() {
		files, err := f.issue()
		if err != nil {
			return err
		}
		if err := WriteSecretVolume(r.CertDir, files); err != nil {
			return err
		}
	}
	return nil
}

// issue issues a serving certificate's files the current way.
func (f *Fleet) issue() (map[string][]byte, error) {
	f.mu.Lock()
	issue := f.ca
	f.mu.Unlock()
	return issue()
}

// SetServing changes how new certificates are issued (a new CA).
func (f *Fleet) SetServing(issue func() (map[string][]byte, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ca = issue
}

// Close kills every replica and the stand-in and removes their files.
func (f *Fleet) Close() error {
	for _, r := range f.Replicas() {
		f.Kill(r)
	}
	return errors.Join(f.StandIn.Close(), os.RemoveAll(f.dir))
}

// SetCABundle sets caBundle on every webhook of the environment's registered
// configurations, as cainjector does.
func (e *Environment) SetCABundle(ctx context.Context, bundle []byte) error {
	for _, c := range e.env.WebhookInstallOptions.MutatingWebhooks {
		var live admissionregistrationv1.MutatingWebhookConfiguration
		if err := e.update(ctx, client.ObjectKey{Name: c.Name}, &live, func() {
			for i := range live.Webhooks {
				live.Webhooks[i].ClientConfig.CABundle = bundle
			}
		}); err != nil {
			return err
		}
	}
	for _, c := range e.env.WebhookInstallOptions.ValidatingWebhooks {
		var live admissionregistrationv1.ValidatingWebhookConfiguration
		if err := e.update(ctx, client.ObjectKey{Name: c.Name}, &live, func() {
			for i := range live.Webhooks {
				live.Webhooks[i].ClientConfig.CABundle = bundle
			}
		}); err != nil {
			return err
		}
	}
	return nil
}

// update is Edit returning its error.
func (e *Environment) update(ctx context.Context, key client.ObjectKey, obj client.Object, edit func()) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := e.Client.Get(ctx, key, obj); err != nil {
			return err
		}
		edit()
		return e.Client.Update(ctx, obj)
	})
}

// WriteSecretVolume writes files into dir as the kubelet writes a Secret
// volume, so that an update is atomic: the files live in a timestamped
// directory, ..data links to it, and each name links into ..data; an update
// writes a new directory, swaps ..data with a rename and removes the old one.
// A certificate watcher sees the names' targets removed, not a half-written
// file.
func WriteSecretVolume(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(data, name), content, 0o600); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(data), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}
