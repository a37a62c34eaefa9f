package servicehost

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/valyala/fastjson"
)

// The fast path reads only a few fields of a Pod, but a Pod that the typed
// decoder refuses (a field of the wrong type anywhere, a timestamp that does
// not parse) must still be refused: the schema below, built once from
// corev1.Pod by reflection, checks every member of the parsed document the
// way the decoder would type it, at the cost of one walk of the document.

// shape is the JSON type the decoder expects of a value.
type shape uint8

const (
	shapeAny shape = iota // a type the check does not know: anything goes
	shapeObject
	shapeMap
	shapeList
	shapeString
	shapeBool
	shapeInt
	shapeUint
	shapeFloat
	shapeBytes
	shapeTime
	shapeQuantity
	shapeIntOrString
)

// schema is the expected shape of a value and, for objects, maps and
// lists, of what they hold.
type schema struct {
	shape  shape
	bits   int                // for shapeInt and shapeUint
	fields map[string]*schema // for shapeObject, by JSON name
	elem   *schema            // for shapeMap and shapeList
}

var (
	podSchemaOnce sync.Once
	podSchema     *schema
)

func podSchemaOf() *schema {
	podSchemaOnce.Do(func() { podSchema = schemaOf(reflect.TypeFor[corev1.Pod](), map[reflect.Type]*schema{}) })
	return podSchema
}

// intOrStringNumber is the number an IntOrString may hold.
var intOrStringNumber = &schema{shape: shapeInt, bits: 32}

var (
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	timeType        = reflect.TypeFor[metav1.Time]()
	quantityType    = reflect.TypeFor[resource.Quantity]()
	intOrStringType = reflect.TypeFor[intstr.IntOrString]()
)

func schemaOf(t reflect.Type, seen map[reflect.Type]*schema) *schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t {
	case timeType:
		return &schema{shape: shapeTime}
	case quantityType:
		return &schema{shape: shapeQuantity}
	case intOrStringType:
		return &schema{shape: shapeIntOrString}
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return &schema{shape: shapeAny} // decodes itself (metav1.FieldsV1 takes any JSON)
	}
	if s, ok := seen[t]; ok {
		return s // a recursive type (none in a Pod today)
	}
	switch t.Kind() {
	case reflect.Struct:
		s := &schema{shape: shapeObject, fields: map[string]*schema{}}
		seen[t] = s
		addFields(s, t, seen)
		return s
	case reflect.Map:
		return &schema{shape: shapeMap, elem: schemaOf(t.Elem(), seen)}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return &schema{shape: shapeBytes}
		}
		return &schema{shape: shapeList, elem: schemaOf(t.Elem(), seen)}
	case reflect.String:
		return &schema{shape: shapeString}
	case reflect.Bool:
		return &schema{shape: shapeBool}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &schema{shape: shapeInt, bits: t.Bits()}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &schema{shape: shapeUint, bits: t.Bits()}
	case reflect.Float32, reflect.Float64:
		return &schema{shape: shapeFloat, bits: t.Bits()}
	}
	return &schema{shape: shapeAny}
}

// addFields adds t's fields by JSON name, inlining embedded structs without
// a name as the decoder does.
func addFields(s *schema, t reflect.Type, seen map[reflect.Type]*schema) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				addFields(s, ft, seen)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		s.fields[name] = schemaOf(f.Type, seen)
	}
}

// errNeedsDecoder tells the caller that only the typed decoder can judge
// the document.
var errNeedsDecoder = errors.New("the typed decoder must judge this document")

// checker walks a parsed document against a schema.
type checker struct {
	// escapes: the raw document holds a backslash, so some string may be
	// written with escapes.
	escapes bool
}

// badValue is a value the typed decoder would refuse. Its path is built
// only once there is an error, as the walk unwinds, so that a good document
// costs no allocation for paths.
type badValue struct {
	path []string // innermost first
	why  string
}

func (e *badValue) Error() string {
	var b strings.Builder
	for i := len(e.path) - 1; i >= 0; i-- {
		b.WriteString(e.path[i])
	}
	return pathOrRoot(b.String()) + ": " + e.why
}

// within prefixes err's path with segment, when err is a badValue.
func within(err error, segment string) error {
	var bad *badValue
	if errors.As(err, &bad) {
		bad.path = append(bad.path, segment)
	}
	return err
}

// check walks v against s and returns the first value the typed decoder
// would refuse (a *badValue naming its path), or errNeedsDecoder.
func (c checker) check(s *schema, v *fastjson.Value) error {
	t := v.Type()
	if t == fastjson.TypeNull || s.shape == shapeAny {
		return nil // the decoder leaves the field empty
	}
	wrong := func() error { return &badValue{why: "a " + t.String() + " where the Pod has another type"} }
	switch s.shape {
	case shapeObject:
		o, err := v.Object()
		if err != nil {
			return wrong()
		}
		var first error
		o.Visit(func(k []byte, member *fastjson.Value) {
			if first != nil {
				return
			}
			if f, ok := s.fields[string(k)]; ok {
				if err := c.check(f, member); err != nil {
					first = within(err, "."+string(k))
				}
			}
		})
		return first
	case shapeMap:
		o, err := v.Object()
		if err != nil {
			return wrong()
		}
		var first error
		o.Visit(func(k []byte, member *fastjson.Value) {
			if first == nil {
				if err := c.check(s.elem, member); err != nil {
					first = within(err, "[…]") // keys are request content: never in a message
				}
			}
		})
		return first
	case shapeList:
		items, err := v.Array()
		if err != nil {
			return wrong()
		}
		for i, item := range items {
			if err := c.check(s.elem, item); err != nil {
				return within(err, "["+strconv.Itoa(i)+"]")
			}
		}
		return nil
	case shapeString:
		if t != fastjson.TypeString {
			return wrong()
		}
		return nil
	case shapeBool:
		if t != fastjson.TypeTrue && t != fastjson.TypeFalse {
			return wrong()
		}
		return nil
	case shapeInt, shapeUint, shapeFloat:
		if t != fastjson.TypeNumber {
			return wrong()
		}
		return checkNumber(s, v)
	case shapeBytes:
		b, err := v.StringBytes()
		if err != nil {
			return wrong()
		}
		if _, err := base64.StdEncoding.DecodeString(string(b)); err != nil {
			return &badValue{why: "not base64"}
		}
		return nil
	case shapeTime:
		b, err := v.StringBytes()
		if err != nil {
			return wrong()
		}
		if _, err := time.Parse(time.RFC3339, string(b)); err != nil {
			return &badValue{why: "not an RFC 3339 time"}
		}
		return nil
	case shapeQuantity:
		if c.escapes {
			// The decoder parses a quantity from its raw bytes, escapes and all; the
			// parsed document holds them unescaped, so only the decoder can tell.
			return errNeedsDecoder
		}
		var text string
		switch t {
		case fastjson.TypeString:
			text = string(v.GetStringBytes())
		case fastjson.TypeNumber:
			text = v.String()
		default:
			return wrong()
		}
		if _, err := resource.ParseQuantity(strings.TrimSpace(text)); err != nil {
			return &badValue{why: "not a quantity"}
		}
		return nil
	case shapeIntOrString:
		switch t {
		case fastjson.TypeString:
			return nil
		case fastjson.TypeNumber:
			return checkNumber(intOrStringNumber, v)
		}
		return wrong()
	}
	return nil
}

// checkNumber refuses what the decoder refuses of a number literal for an
// integer or float field: a fraction or exponent for an integer, a sign for
// an unsigned one, and anything out of range. (json.Valid has already
// refused what is no JSON number.)
func checkNumber(s *schema, v *fastjson.Value) error {
	ok := true
	switch s.shape {
	case shapeInt:
		n, err := v.Int64()
		ok = err == nil && n >= -1<<(s.bits-1) && n <= 1<<(s.bits-1)-1
	case shapeUint:
		n, err := v.Uint64()
		ok = err == nil && (s.bits == 64 || n <= 1<<s.bits-1)
	case shapeFloat:
		f, err := v.Float64()
		ok = err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && (s.bits == 64 || math.Abs(f) <= math.MaxFloat32)
	}
	if !ok {
		return &badValue{why: "a number out of range or of the wrong kind for the field"}
	}
	return nil
}

func pathOrRoot(path string) string {
	if path == "" {
		return "the object"
	}
	return strings.TrimPrefix(path, ".")
}
