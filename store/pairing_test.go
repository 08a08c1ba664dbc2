package store

import (
	"fmt"
	"reflect"
	"testing"
)

// fill sets every field reachable from v to a non-zero value, so a field
// added later is covered by TestPairedDeviceClone without editing it.
func fill(t *testing.T, v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Uint8:
		v.SetUint(uint64(*n))
	case reflect.Array:
		for i := 0; i < v.Len(); i++ {
			fill(t, v.Index(i), n)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			fill(t, v.Field(i), n)
		}
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := 0; i < 2; i++ {
			fill(t, s.Index(i), n)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for i := 0; i < 2; i++ {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(t, k, n)
			fill(t, e, n)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(t, p.Elem(), n)
		v.Set(p)
	default:
		t.Fatalf("fill: unhandled kind %s (%s)", v.Kind(), v.Type())
	}
}

// shared reports a slice, map or pointer reachable from both a and b at the
// same address.
func shared(a, b reflect.Value, path string) string {
	switch a.Kind() {
	case reflect.Slice, reflect.Map, reflect.Pointer:
		if !a.IsNil() && a.UnsafePointer() == b.UnsafePointer() {
			return path
		}
	}
	switch a.Kind() {
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if p := shared(a.Field(i), b.Field(i), path+"."+a.Type().Field(i).Name); p != "" {
				return p
			}
		}
	case reflect.Slice:
		for i := 0; i < a.Len(); i++ {
			if p := shared(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	case reflect.Map:
		for _, k := range a.MapKeys() {
			if p := shared(a.MapIndex(k), b.MapIndex(k), fmt.Sprintf("%s[%v]", path, k)); p != "" {
				return p
			}
		}
	case reflect.Pointer:
		if !a.IsNil() {
			return shared(a.Elem(), b.Elem(), path)
		}
	}
	return ""
}

func TestPairedDeviceClone(t *testing.T) {
	var d PairedDevice
	n := 0
	fill(t, reflect.ValueOf(&d).Elem(), &n)
	c := d.Clone()
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("Clone differs:\n got %+v\nwant %+v", c, d)
	}
	if p := shared(reflect.ValueOf(d), reflect.ValueOf(c), "PairedDevice"); p != "" {
		t.Fatalf("Clone shares %s with the original", p)
	}
	// nil stays nil, empty stays empty.
	e := PairedDevice{Roles: []string{}, Tokens: map[string]DeviceToken{}, Node: &NodeSurface{Caps: []string{}}}
	ce := e.Clone()
	if !reflect.DeepEqual(ce, e) || ce.Scopes != nil || ce.Roles == nil || ce.Tokens == nil || ce.Node.Caps == nil || ce.Node.Commands != nil || ce.PendingNode != nil {
		t.Fatalf("Clone of empty and nil fields: %#v", ce)
	}
}
