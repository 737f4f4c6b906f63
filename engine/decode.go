package engine

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// buildDocument makes a struct type that mirrors this file, so a single
// strict decode checks every key of every component against the
// component's own schema and reports unknown keys with their line. Each
// component gets a wrapper struct: the engine's keys (type, inputs, ...)
// followed by copies of the component's exported fields, initialised with
// its defaults. copyBack moves the decoded values into the component.
func buildDocument(comps []*ComponentConfig) (reflect.Value, map[string]*wrapper) {
	sections := map[Kind][]reflect.StructField{}
	wrappers := map[string]*wrapper{}
	for _, c := range comps {
		w := newWrapper(c)
		wrappers[c.Name] = w
		sections[c.Kind] = append(sections[c.Kind], reflect.StructField{
			Name: fmt.Sprintf("C%d", len(sections[c.Kind])),
			Type: reflect.PointerTo(w.typ),
			Tag:  reflect.StructTag(fmt.Sprintf(`toml:%q`, c.Name)),
		})
	}
	top := []reflect.StructField{{Name: "Devices", Type: reflect.TypeFor[map[string]*Device](), Tag: `toml:"devices"`}}
	for _, k := range []Kind{KindSource, KindProcessor, KindSink} {
		top = append(top, reflect.StructField{
			Name: sectionField(k),
			Type: reflect.StructOf(sections[k]),
			Tag:  reflect.StructTag(fmt.Sprintf(`toml:%q`, string(k))),
		})
	}
	doc := reflect.New(reflect.StructOf(top)).Elem()
	counts := map[Kind]int{}
	for _, c := range comps {
		sec := doc.FieldByName(sectionField(c.Kind))
		sec.Field(counts[c.Kind]).Set(wrappers[c.Name].val.Addr())
		counts[c.Kind]++
	}
	return doc, wrappers
}

func sectionField(k Kind) string { return strings.ToUpper(string(k[:1])) + string(k[1:]) }

type wrapper struct {
	typ    reflect.Type
	val    reflect.Value // the wrapper struct (addressable)
	target reflect.Value // the component struct
	fields [][]int       // wrapper field base+i holds the target field at index path fields[i]
	base   int           // number of engine fields before the copies
	extra  []int         // index path of the component's Extra field, if any
}

func newWrapper(c *ComponentConfig) *wrapper {
	fields := []reflect.StructField{{Name: "Type", Type: reflect.TypeFor[string](), Tag: `toml:"type"`}}
	if c.Kind != KindSource {
		fields = append(fields,
			reflect.StructField{Name: "Inputs", Type: reflect.TypeFor[[]string](), Tag: `toml:"inputs"`},
			reflect.StructField{Name: "Buffer", Type: reflect.TypeFor[int](), Tag: `toml:"buffer"`},
			reflect.StructField{Name: "WhenFull", Type: reflect.TypeFor[string](), Tag: `toml:"when_full"`},
		)
	}
	w := &wrapper{base: len(fields), target: reflect.ValueOf(c.Value).Elem()}
	reserved := map[string]bool{"type": true, "inputs": true, "buffer": true, "when_full": true}
	// Keys of embedded structs are promoted like Go promotes fields: a key
	// declared nearer the component's own struct wins.
	type candidate struct {
		idx  []int
		name string
		f    reflect.StructField
	}
	var found []candidate
	var walk func(t reflect.Type, path []int)
	walk = func(t reflect.Type, path []int) {
		var embedded []func()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			idx := append(append([]int(nil), path...), i)
			// An untagged embedded struct shares its keys with the
			// component's table, like a shared block of settings.
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
				embedded = append(embedded, func() { walk(f.Type, idx) })
				continue
			}
			if f.Type == reflect.TypeFor[Extra]() {
				w.extra = idx
				continue
			}
			if !f.IsExported() || name == "-" || reserved[name] {
				continue
			}
			if name == "" {
				name = f.Name // go-toml's default key for untagged fields
			}
			found = append(found, candidate{idx, name, f})
		}
		for _, e := range embedded {
			e()
		}
	}
	walk(w.target.Type(), nil)
	slices.SortStableFunc(found, func(a, b candidate) int { return len(a.idx) - len(b.idx) })
	seen := map[string]bool{}
	for _, c := range found {
		if seen[c.name] {
			continue
		}
		seen[c.name] = true
		fields = append(fields, reflect.StructField{Name: fmt.Sprintf("F%d", len(fields)), Type: c.f.Type, Tag: reflect.StructTag(fmt.Sprintf(`toml:%q`, c.name))})
		w.fields = append(w.fields, c.idx)
	}
	w.typ = reflect.StructOf(fields)
	w.val = reflect.New(w.typ).Elem()
	for j, idx := range w.fields {
		w.val.Field(w.base + j).Set(w.target.FieldByIndex(idx))
	}
	return w
}

func (w *wrapper) copyBack() {
	for j, idx := range w.fields {
		w.target.FieldByIndex(idx).Set(w.val.Field(w.base + j))
	}
}
