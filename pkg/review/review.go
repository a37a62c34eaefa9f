// Package review serves AdmissionReviews for a controller-runtime webhook
// with one pass over the request body where controller-runtime makes
// several.
//
// controller-runtime's webhook.Admission decodes a review with the API
// machinery's universal deserializer: it reads the whole body once for its
// apiVersion and kind, once more to decode it, and copies the admitted
// object out of it; the handler then reads the object a third time. For a
// Pod review that is most of what a webhook spends per request
// (docs/performance.md). Handler validates the body once, finds the
// envelope's fields without decoding the objects, and hands the handler the
// objects as slices of the body. Whatever it is not sure to read exactly as
// controller-runtime reads it (a body that is not a well-formed v1 or
// v1beta1 AdmissionReview, a duplicate field, a value of an unexpected type)
// it passes to controller-runtime whole, so every error answer is
// controller-runtime's own. The tests hold both to the same answers, byte
// for byte, over a corpus and a fuzz target.
package review

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/valyala/fastjson"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"
)

// MaxRequestBytes is controller-runtime's bound on a review's body (two
// objects of up to 3 MiB and the rest); a body this long or longer is
// refused, by controller-runtime.
const MaxRequestBytes = 7 * 1024 * 1024

// Handler serves Webhook's reviews: well-formed ones in one pass, any other
// request through Webhook.ServeHTTP itself. Webhook's Handle (its handler,
// logging and panic recovery) decides either way.
type Handler struct {
	Webhook *webhook.Admission
}

// ServeHTTP implements http.Handler.
func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.Header.Get("Content-Type") != "application/json" {
		h.Webhook.ServeHTTP(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBytes))
	req, gvk, ok := admission.Request{}, schema.GroupVersionKind{}, false
	if err == nil && len(body) < MaxRequestBytes {
		req, gvk, ok = Decode(body)
	}
	if !ok {
		// controller-runtime reads the same bytes, then whatever is left, or the
		// same error: a connection that timed out must not be read again (it
		// would wait for bytes that never come).
		rest := r.Body
		if err != nil {
			rest = io.NopCloser(failedReader{err})
		}
		// On a copy of the request: net/http decides whether to close the
		// connection after the answer by the original request's body (a body
		// that failed, or was left unread, closes it), so r.Body stays as it was.
		replay := r.WithContext(r.Context())
		replay.Body = readCloser{io.MultiReader(bytes.NewReader(body), rest), r.Body}
		h.Webhook.ServeHTTP(w, replay)
		return
	}
	_ = r.Body.Close()
	ctx := r.Context()
	if h.Webhook.WithContextFunc != nil {
		ctx = h.Webhook.WithContextFunc(ctx, r)
	}
	// controller-runtime's lines at verbosity 5, built only when written.
	verbose := admissionLog.V(5).Enabled()
	if verbose {
		h.logger(&req).V(5).Info("received request")
	}
	resp := h.Webhook.Handle(ctx, req)
	review := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	review.SetGroupVersionKind(gvk)
	if err := json.NewEncoder(w).Encode(review); err != nil {
		// As controller-runtime: the connection is likely gone; one try at an error answer.
		h.logger(nil).Error(err, "unable to encode and write the response")
		failed := admission.Errored(http.StatusInternalServerError, err)
		if err := json.NewEncoder(w).Encode(admissionv1.AdmissionReview{Response: &failed.AdmissionResponse}); err != nil {
			h.logger(nil).Error(err, "still unable to encode and write the InternalServerError response")
		}
		return
	}
	if verbose {
		log := h.logger(nil)
		if res := resp.Result; res != nil {
			log = log.WithValues("code", res.Code, "reason", res.Reason, "message", res.Message)
		}
		log.V(5).Info("wrote response", "requestID", resp.UID, "allowed", resp.Allowed)
	}
}

// admissionLog is the logger controller-runtime's webhook starts from.
var admissionLog = logf.Log.WithName("admission")

// logger is the Webhook's logger for req (nil: none), as controller-runtime
// builds it.
func (h Handler) logger(req *admission.Request) logr.Logger {
	construct := h.Webhook.LogConstructor
	if construct == nil {
		construct = admission.DefaultLogConstructor
	}
	return construct(admissionLog, req)
}

// failedReader fails every read with err.
type failedReader struct{ err error }

func (f failedReader) Read([]byte) (int, error) { return 0, f.err }

// readCloser reads from one reader and closes another.
type readCloser struct {
	io.Reader
	io.Closer
}

// Decode reads body as controller-runtime reads an AdmissionReview and
// returns its request and its group, version and kind. ok is false when
// body is anything but a well-formed admission.k8s.io/v1 or v1beta1
// AdmissionReview whose fields Decode reads exactly as controller-runtime
// does: the caller then leaves body to controller-runtime. The request's
// objects are slices of body, not copies.
func Decode(body []byte) (req admission.Request, gvk schema.GroupVersionKind, ok bool) {
	if deeperThan(body, MaxDepth) || fastjson.ValidateBytes(body) != nil {
		return req, gvk, false
	}
	s := scanner{b: body}
	var apiVersion, kind string
	var request []byte
	var seen fields
	okMembers := s.members(func(key string, value []byte) bool {
		if !seen.first(key, topFields) {
			return false // which one wins is the decoder's business
		}
		if foldsToAnother(key, topFields) {
			// controller-runtime reads the kind and apiVersion ignoring case, and
			// writes what it read into its answer.
			return false
		}
		switch key {
		case "apiVersion":
			return str(value, &apiVersion)
		case "kind":
			return str(value, &kind)
		case "request":
			request = value
			return value[0] == '{'
		case "response":
			return isNull(value) // a response in a request: controller-runtime decodes it, and may refuse it
		}
		return true // unknown fields are ignored, as the (non-strict) decoder ignores them
	})
	if !okMembers || request == nil || kind != "AdmissionReview" ||
		(apiVersion != "admission.k8s.io/v1" && apiVersion != "admission.k8s.io/v1beta1") {
		return req, gvk, false
	}
	gvk = schema.FromAPIVersionAndKind(apiVersion, kind)
	if !decodeRequest(request, &req.AdmissionRequest) {
		return admission.Request{}, schema.GroupVersionKind{}, false
	}
	return req, gvk, true
}

// decodeRequest reads an AdmissionRequest object.
func decodeRequest(raw []byte, r *admissionv1.AdmissionRequest) bool {
	s := scanner{b: raw}
	var seen fields
	return s.members(func(key string, v []byte) bool {
		if !seen.first(key, requestFields) {
			return false
		}
		switch key {
		case "uid":
			var uid string
			ok := str(v, &uid)
			r.UID = types.UID(uid)
			return ok
		case "kind":
			return small(v, &r.Kind)
		case "resource":
			return small(v, &r.Resource)
		case "subResource":
			return str(v, &r.SubResource)
		case "requestKind":
			return smallPointer(v, &r.RequestKind)
		case "requestResource":
			return smallPointer(v, &r.RequestResource)
		case "requestSubResource":
			return str(v, &r.RequestSubResource)
		case "name":
			return str(v, &r.Name)
		case "namespace":
			return str(v, &r.Namespace)
		case "operation":
			var op string
			ok := str(v, &op)
			r.Operation = admissionv1.Operation(op)
			return ok
		case "userInfo":
			return small(v, &r.UserInfo)
		case "object":
			return embedded(v, &r.Object.Raw)
		case "oldObject":
			return embedded(v, &r.OldObject.Raw)
		case "options":
			return embedded(v, &r.Options.Raw)
		case "dryRun":
			switch string(v) {
			case "true", "false":
				r.DryRun = new(string(v) == "true")
			case "null":
				r.DryRun = nil
			default:
				return false
			}
		}
		return true
	})
}

// The fields Decode reads, top level and in the request.
var (
	topFields     = []string{"apiVersion", "kind", "request", "response"}
	requestFields = []string{"uid", "kind", "resource", "subResource", "requestKind", "requestResource", "requestSubResource",
		"name", "namespace", "operation", "userInfo", "object", "oldObject", "options", "dryRun"}
)

// foldsToAnother tells whether key equals one of known ignoring case, but
// not exactly.
func foldsToAnother(key string, known []string) bool {
	for _, k := range known {
		if key != k && strings.EqualFold(key, k) {
			return true
		}
	}
	return false
}

// fields records which of a list of fields an object has shown.
type fields uint32

// first tells whether key is not one of known seen before (an unknown key
// is ignored, so it may repeat).
func (f *fields) first(key string, known []string) bool {
	for i, k := range known {
		if k == key {
			if *f&(1<<i) != 0 {
				return false
			}
			*f |= 1 << i
		}
	}
	return true
}

// str reads a JSON string (null leaves s as it is, as the decoder does).
func str(v []byte, s *string) bool {
	switch {
	case isNull(v):
		return true
	case v[0] != '"':
		return false
	case bytes.IndexByte(v, '\\') < 0 && utf8.Valid(v):
		*s = string(v[1 : len(v)-1])
		return true
	}
	// Escapes and invalid UTF-8 (which the decoder replaces): its own reading.
	return kjson.UnmarshalCaseSensitivePreserveInts(v, s) == nil
}

// small decodes a small object (a kind, a resource, the user) with the
// library controller-runtime's decoder uses, so that it reads the same.
func small[T any](v []byte, into *T) bool {
	if isNull(v) {
		return true
	}
	if v[0] != '{' {
		return false
	}
	var out T
	if kjson.UnmarshalCaseSensitivePreserveInts(v, &out) != nil {
		return false
	}
	*into = out
	return true
}

// smallPointer is small for an optional field.
func smallPointer[T any](v []byte, into **T) bool {
	if isNull(v) {
		*into = nil
		return true
	}
	var out T
	if !small(v, &out) {
		return false
	}
	*into = &out
	return true
}

// embedded keeps an embedded object's bytes (runtime.RawExtension: null keeps
// none).
func embedded(v []byte, into *[]byte) bool {
	if !isNull(v) {
		*into = v
	}
	return true
}

func isNull(v []byte) bool {
	return string(v) == "null"
}
