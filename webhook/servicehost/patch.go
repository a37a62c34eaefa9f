package servicehost

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/svcguard/svcguard/pkg/redact"

	"github.com/valyala/fastjson"
)

// The fast path: the handler reads only what a decision needs from the raw
// Pod (its labels, and each container's name and env names and values) and
// writes the JSON patch directly, instead of decoding the whole Pod into
// typed structs, encoding it twice and diffing the two documents. The typed
// path is kept in the tests as the oracle: the differential tests apply
// both answers to the same Pods and compare (patch_test.go).

// podParsers reuse their buffers across requests.
var podParsers fastjson.ParserPool

// PodView is what the rules read of a raw Pod.
type PodView struct {
	// OptedOut: the Pod carries the opt-out label.
	OptedOut bool
	// Lists are the containers by list, in the order the patch names them.
	Lists [3]ContainerList
}

// ContainerList is one list of containers of a raw Pod.
type ContainerList struct {
	// Field is the list's JSON name ("initContainers").
	Field string
	// Containers are its entries in order.
	Containers []RawContainer
}

// RawContainer is what the rules read of one container.
type RawContainer struct {
	Name string
	// Env are the names and values of its env entries, in order; HasEnv is
	// false when env is absent, null or empty.
	Env []RawEnv
}

// RawEnv is one env entry: its name and (literal) value.
type RawEnv struct {
	Name, Value string
}

// containerFields are the Pod's container lists, in the order ApplyToPod
// visits them.
var containerFields = [3]string{"initContainers", "containers", "ephemeralContainers"}

// ReadPod reads raw, a Pod as the API server sends it, into a PodView,
// and refuses exactly what decoder refuses. It parses the document once and
// checks every member against the Pod's schema (schema.go); only the rare
// document that parse cannot judge as the decoder would (deeper than 300
// levels, or a resource quantity in a document with escapes) is decoded by
// decoder instead, and read from the typed Pod.
func ReadPod(raw []byte, decoder admission.Decoder) (PodView, error) {
	if fastjson.ValidateBytes(raw) != nil {
		// The decoder's own message for empty and invalid documents.
		return readTyped(raw, decoder)
	}
	p := podParsers.Get()
	defer podParsers.Put(p)
	v, err := p.ParseBytes(raw)
	if err != nil {
		return readTyped(raw, decoder)
	}
	view := emptyView()
	if v.Type() == fastjson.TypeNull {
		return view, nil // decodes to an empty Pod
	}
	obj, err := v.Object()
	if err != nil {
		return readTyped(raw, decoder)
	}
	if err := checkTypeMeta(obj); err != nil {
		return view, err
	}
	switch err := (checker{escapes: bytes.IndexByte(raw, '\\') >= 0}).check(podSchemaOf(), v); {
	case errors.Is(err, errNeedsDecoder):
		return readTyped(raw, decoder)
	case err != nil:
		return view, err
	}
	if err := unambiguous(obj, "the object"); err != nil {
		return view, err
	}
	if meta := last(obj, "metadata"); meta != nil && meta.Type() == fastjson.TypeObject {
		if err := unambiguous(meta.GetObject(), "metadata"); err != nil {
			return view, err
		}
		if labels := last(meta.GetObject(), "labels"); labels != nil && labels.Type() == fastjson.TypeObject {
			if err := unambiguous(labels.GetObject(), "metadata.labels"); err != nil {
				return view, err
			}
			optOut, _ := stringField(labels.GetObject(), OptOutLabel, "")
			view.OptedOut = optOut == OptOutValue
		}
	}
	spec := last(obj, "spec")
	if spec == nil || spec.Type() != fastjson.TypeObject {
		return view, nil
	}
	if err := unambiguous(spec.GetObject(), "spec"); err != nil {
		return view, err
	}
	for i, field := range containerFields {
		if view.Lists[i].Containers, err = readContainers(spec.GetObject(), field); err != nil {
			return view, err
		}
	}
	return view, nil
}

// errAmbiguous refuses what the API server never sends and the typed decoder
// reads in ways not worth reproducing: it merges duplicate members into one
// struct, and turns a null container or env entry into an empty one that
// no patch can reach.
var errAmbiguous = errors.New("duplicate members, or null entries in a list of containers or env, which no API server sends")

// unambiguous refuses an object the fast path reads if a member name repeats.
func unambiguous(o *fastjson.Object, where string) error {
	n := o.Len()
	if n < 2 {
		return nil
	}
	dup := false
	if n <= 32 {
		var keys [32]string
		i := 0
		o.Visit(func(k []byte, _ *fastjson.Value) {
			for _, seen := range keys[:i] {
				if seen == string(k) {
					dup = true
				}
			}
			keys[i] = string(k)
			i++
		})
	} else {
		seen := make(map[string]bool, n)
		o.Visit(func(k []byte, _ *fastjson.Value) {
			dup = dup || seen[string(k)]
			seen[string(k)] = true
		})
	}
	if dup {
		return fmt.Errorf("%s: %w", where, errAmbiguous)
	}
	return nil
}

func emptyView() PodView {
	var view PodView
	for i, field := range containerFields {
		view.Lists[i].Field = field
	}
	return view
}

// readTyped decodes raw with decoder and reads the typed Pod.
func readTyped(raw []byte, decoder admission.Decoder) (PodView, error) {
	pod := &corev1.Pod{}
	if err := decoder.DecodeRaw(runtime.RawExtension{Raw: raw}, pod); err != nil {
		return PodView{}, redact.Error(err)
	}
	view := emptyView()
	view.OptedOut = OptedOut(pod.Labels)
	for i, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			view.Lists[i].Containers = append(view.Lists[i].Containers, RawContainer{Name: c.Name, Env: rawEnv(c.Env)})
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		view.Lists[2].Containers = append(view.Lists[2].Containers, RawContainer{Name: c.Name, Env: rawEnv(c.Env)})
	}
	return view, nil
}

func rawEnv(env []corev1.EnvVar) []RawEnv {
	if len(env) == 0 {
		return nil
	}
	out := make([]RawEnv, len(env))
	for i, e := range env {
		out[i] = RawEnv{Name: e.Name, Value: e.Value}
	}
	return out
}

// checkTypeMeta refuses an object that names another kind or version, as
// the typed decoder does; both may be absent (the decoder then takes the
// Pod it decodes into).
func checkTypeMeta(obj *fastjson.Object) error {
	kind, err := stringField(obj, "kind", "")
	if err != nil {
		return err
	}
	apiVersion, err := stringField(obj, "apiVersion", "")
	if err != nil {
		return err
	}
	if (kind != "" && kind != "Pod") || (apiVersion != "" && apiVersion != "v1") {
		return fmt.Errorf("the object is a %s of %s, not a v1 Pod", redact.Name(kind), redact.Name(apiVersion))
	}
	return nil
}

// readContainers reads a container list; the schema check has already
// refused members of the wrong type.
func readContainers(spec *fastjson.Object, field string) ([]RawContainer, error) {
	list := last(spec, field)
	if list == nil || list.Type() != fastjson.TypeArray {
		return nil, nil
	}
	items := list.GetArray()
	out := make([]RawContainer, len(items))
	for i, item := range items {
		where := "spec." + field + "[" + strconv.Itoa(i) + "]"
		c, err := item.Object()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, errAmbiguous)
		}
		if err := unambiguous(c, where); err != nil {
			return nil, err
		}
		out[i].Name, _ = stringField(c, "name", "")
		env := last(c, "env")
		if env == nil || env.Type() != fastjson.TypeArray {
			continue
		}
		entries := env.GetArray()
		if len(entries) == 0 {
			continue
		}
		out[i].Env = make([]RawEnv, len(entries))
		for j, entry := range entries {
			at := where + ".env[" + strconv.Itoa(j) + "]"
			e, err := entry.Object()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", at, errAmbiguous)
			}
			if err := unambiguous(e, at); err != nil {
				return nil, err
			}
			out[i].Env[j].Name, _ = stringField(e, "name", "")
			out[i].Env[j].Value, _ = stringField(e, "value", "")
		}
	}
	return out, nil
}

// last returns the value of the member named key (unambiguous has refused
// duplicates of the members that count); nil when there is none.
func last(o *fastjson.Object, key string) *fastjson.Value {
	var found *fastjson.Value
	o.Visit(func(k []byte, v *fastjson.Value) {
		if string(k) == key {
			found = v
		}
	})
	return found
}

// stringField returns the string member key of o ("" when absent or null);
// a member of another type is an error naming where.
func stringField(o *fastjson.Object, key, where string) (string, error) {
	v := last(o, key)
	if v == nil || v.Type() == fastjson.TypeNull {
		return "", nil
	}
	b, err := v.StringBytes()
	if err != nil {
		if where != "" {
			where += "."
		}
		return "", fmt.Errorf("%s%.63s is not a string", where, key)
	}
	return string(b), nil
}

// PodPatch returns the JSON patch that applies the Injection to every
// container of a Pod CREATE (see ApplyToPod), and how many containers it
// injects; nil and 0 when none needs it.
func (in Injection) PodPatch(view PodView) ([]byte, int) {
	return in.patch(view, nil)
}

// NewEphemeralContainersPatch returns the JSON patch for a
// pods/ephemeralcontainers UPDATE: only the ephemeral containers that old
// lacks, by name (see ApplyToNewEphemeralContainers).
func (in Injection) NewEphemeralContainersPatch(view, old PodView) ([]byte, int) {
	existing := make(map[string]bool, len(old.Lists[2].Containers))
	for _, c := range old.Lists[2].Containers {
		existing[c.Name] = true
	}
	return in.patch(view, func(list int, c RawContainer) bool { return list == 2 && !existing[c.Name] })
}

// patch writes one "add" per injected container (two when the container
// has env entries: one per variable, at the insert position); only
// containers for which include returns true count (all when it is nil).
func (in Injection) patch(view PodView, include func(list int, c RawContainer) bool) ([]byte, int) {
	var held [2]corev1.EnvVar // the variables, on the stack
	vars := in.appendVars(held[:0])
	var entries [2][]byte // each variable as a JSON env entry, written once
	var entryBuf [256]byte
	size := 0
	for j, v := range vars {
		entries[j] = appendEnvEntry(entryBuf[size:size], v.Name, v.Value)
		size += len(entries[j])
		if size > len(entryBuf) {
			size = len(entryBuf) // a long value went to the heap; later ones may too
		}
	}
	containers := 0
	for _, list := range view.Lists {
		containers += len(list.Containers)
	}
	var b []byte
	injected := 0
	for l, list := range view.Lists {
		for i, c := range list.Containers {
			if (include != nil && !include(l, c)) || setsServiceVarRaw(c.Env) {
				continue
			}
			if injected == 0 {
				// One allocation for the whole patch: two operations of about 60 bytes
				// besides their entries, per container that may need them.
				b = make([]byte, 0, 2+containers*(2*64+len(entries[0])+len(entries[1])))
				b = append(b, '[')
			} else {
				b = append(b, ',')
			}
			injected++
			if len(c.Env) == 0 {
				b = appendEnvPath(b, list.Field, i)
				b = append(b, `","value":[`...)
				for j := range vars {
					if j > 0 {
						b = append(b, ',')
					}
					b = append(b, entries[j]...)
				}
				b = append(b, "]}"...)
				continue
			}
			at := firstReferenceRaw(c.Env, vars)
			for j := range vars {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendEnvPath(b, list.Field, i)
				b = append(b, '/')
				b = strconv.AppendInt(b, int64(at+j), 10)
				b = append(b, `","value":`...)
				b = append(b, entries[j]...)
				b = append(b, '}')
			}
		}
	}
	if injected == 0 {
		return nil, 0
	}
	return append(b, ']'), injected
}

// appendEnvPath appends the start of an "add" operation on the env of
// container i of list field, up to the end of the path.
func appendEnvPath(b []byte, field string, i int) []byte {
	b = append(b, `{"op":"add","path":"/spec/`...)
	b = append(b, field...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(i), 10)
	return append(b, "/env"...)
}

// appendEnvEntry appends the env entry name=value as JSON.
func appendEnvEntry(b []byte, name, value string) []byte {
	b = append(b, `{"name":`...)
	b = appendJSONString(b, name)
	b = append(b, `,"value":`...)
	b = appendJSONString(b, value)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Names and values svcguard
// injects are plain (an IP or DNS name, a port); anything else is encoded
// by encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(s) // a string always encodes
			return append(b, quoted...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func setsServiceVarRaw(env []RawEnv) bool {
	for _, e := range env {
		if e.Name == HostVar || e.Name == PortVar {
			return true
		}
	}
	return false
}

// firstReferenceRaw returns the index of the first entry of env whose value
// refers to one of vars as $(NAME), or len(env) when none does.
func firstReferenceRaw(env []RawEnv, vars []corev1.EnvVar) int {
	for i, e := range env {
		for _, v := range vars {
			if containsReference(e.Value, v.Name) {
				return i
			}
		}
	}
	return len(env)
}

// containsReference tells whether value holds $(name), without building it.
func containsReference(value, name string) bool {
	for {
		at := strings.Index(value, "$(")
		if at < 0 {
			return false
		}
		value = value[at+2:]
		if strings.HasPrefix(value, name) && strings.HasPrefix(value[len(name):], ")") {
			return true
		}
	}
}
