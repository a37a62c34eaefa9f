package certmanager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
)

// pollInterval is how often the Wait functions look: issuance in a test
// cluster takes tens of milliseconds per step.
const pollInterval = 50 * time.Millisecond

// NewScheme returns a scheme of Kubernetes' built-in types and cert-manager's
// (cert-manager.io/v1), for clients that read and write both.
func NewScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := cmapi.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}

// NewClient returns a controller-runtime client on cfg with NewScheme's
// types: the client the helpers of this package take.
func NewClient(cfg *rest.Config) (client.Client, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// Reissue triggers a new issuance of Certificate namespace/name the way
// `cmctl renew` does: it sets the Certificate's Issuing condition to True
// (reason ManuallyTriggered) through the status subresource, which
// cert-manager's controllers take as the order to issue, exactly as when
// the renewal time comes. A new private key comes with it unless the
// Certificate's privateKey.rotationPolicy is Never. It returns the revision
// the new issuance will have, for WaitForRevision.
func Reissue(ctx context.Context, c client.Client, namespace, name string) (int, error) {
	var next int
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var crt cmapi.Certificate
		if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &crt); err != nil {
			return err
		}
		next = 1
		if crt.Status.Revision != nil {
			next = *crt.Status.Revision + 1
		}
		apiutil.SetCertificateCondition(&crt, crt.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue,
			"ManuallyTriggered", "Certificate re-issuance manually triggered")
		return c.Status().Update(ctx, &crt)
	})
	if err != nil {
		return 0, fmt.Errorf("triggering the issuance of Certificate %s/%s: %w", namespace, name, err)
	}
	return next, nil
}

// WaitForRevision waits until Certificate namespace/name has been issued
// with revision (or a later one) and is Ready for its current spec, and
// returns it. It fails at once when cert-manager reports the issuance
// failed (Issuing False), and when ctx ends, with the Certificate's last
// status either way. Revision 1 is the first issuance.
func WaitForRevision(ctx context.Context, c client.Client, namespace, name string, revision int) (*cmapi.Certificate, error) {
	key := client.ObjectKey{Namespace: namespace, Name: name}
	var crt cmapi.Certificate
	var lastErr error
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, &crt); err != nil {
			if apierrors.IsNotFound(err) || ctx.Err() != nil {
				lastErr = err
				return false, nil
			}
			return false, err
		}
		lastErr = nil
		if issuing := apiutil.GetCertificateCondition(&crt, cmapi.CertificateConditionIssuing); issuing != nil && issuing.Status == cmmeta.ConditionFalse {
			return false, fmt.Errorf("cert-manager failed to issue it (%s: %s)", issuing.Reason, issuing.Message)
		}
		issued := crt.Status.Revision != nil && *crt.Status.Revision >= revision
		ready := apiutil.GetCertificateCondition(&crt, cmapi.CertificateConditionReady)
		return issued && ready != nil && ready.Status == cmmeta.ConditionTrue && ready.ObservedGeneration == crt.Generation &&
			apiutil.GetCertificateCondition(&crt, cmapi.CertificateConditionIssuing) == nil, nil
	})
	if err != nil {
		if lastErr != nil {
			err = errors.Join(err, lastErr)
		}
		return nil, fmt.Errorf("certificate %s/%s: want revision %d issued and Ready: %w; last status: %s",
			namespace, name, revision, err, describeCertificate(&crt))
	}
	return &crt, nil
}

// WaitForIssuerReady waits until Issuer namespace/name is Ready for its
// current spec and returns it; when ctx ends first, the error holds the
// Issuer's last conditions.
func WaitForIssuerReady(ctx context.Context, c client.Client, namespace, name string) (*cmapi.Issuer, error) {
	key := client.ObjectKey{Namespace: namespace, Name: name}
	var issuer cmapi.Issuer
	err := wait.PollUntilContextCancel(ctx, pollInterval, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, key, &issuer); err != nil {
			return false, client.IgnoreNotFound(err)
		}
		for _, cond := range issuer.Status.Conditions {
			if cond.Type == cmapi.IssuerConditionReady {
				return cond.Status == cmmeta.ConditionTrue && cond.ObservedGeneration == issuer.Generation, nil
			}
		}
		return false, nil
	})
	if err != nil {
		var conds []string
		for _, cond := range issuer.Status.Conditions {
			conds = append(conds, fmt.Sprintf("%s=%s (%s: %s)", cond.Type, cond.Status, cond.Reason, cond.Message))
		}
		return nil, fmt.Errorf("issuer %s/%s: want Ready: %w; last conditions: [%s]", namespace, name, err, strings.Join(conds, ", "))
	}
	return &issuer, nil
}

// describeCertificate sums up a Certificate's status for an error message.
func describeCertificate(crt *cmapi.Certificate) string {
	revision := "none"
	if crt.Status.Revision != nil {
		revision = fmt.Sprint(*crt.Status.Revision)
	}
	parts := []string{"revision " + revision}
	for _, cond := range crt.Status.Conditions {
		parts = append(parts, fmt.Sprintf("%s=%s (%s: %s)", cond.Type, cond.Status, cond.Reason, cond.Message))
	}
	return strings.Join(parts, ", ")
}
