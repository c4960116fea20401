package inventory

import (
	"reflect"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
	"github.com/parquet-go/parquet-go/format"
)

// parquet.Group sorts its fields by name, but AWS's s3.inventory schema lists
// columns in a fixed order (bucket, key, version_id, ...). orderedGroup is a
// minimal parquet.Node that keeps the given order.
type orderedGroup []orderedField

type orderedField struct {
	parquet.Node
	name string
}

func (f *orderedField) Name() string { return f.name }

func (f *orderedField) Value(base reflect.Value) reflect.Value {
	// Only used by parquet-go's reflection based Write(any) path, which this
	// package does not use (it writes parquet.Row values).
	if base.Kind() == reflect.Pointer {
		base = base.Elem()
	}
	if base.Kind() == reflect.Struct {
		return base.FieldByName(goFieldName(f.name))
	}
	return reflect.Value{}
}

func (g orderedGroup) ID() int                     { return 0 }
func (g orderedGroup) String() string              { return "orderedGroup" }
func (g orderedGroup) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g orderedGroup) Optional() bool              { return false }
func (g orderedGroup) Repeated() bool              { return false }
func (g orderedGroup) Required() bool              { return true }
func (g orderedGroup) Leaf() bool                  { return false }
func (g orderedGroup) Encoding() encoding.Encoding { return nil }
func (g orderedGroup) Compression() compress.Codec { return nil }
func (g orderedGroup) Fields() []parquet.Field {
	out := make([]parquet.Field, len(g))
	for i := range g {
		out[i] = &g[i]
	}
	return out
}

func (g orderedGroup) GoType() reflect.Type {
	sf := make([]reflect.StructField, len(g))
	for i, f := range g {
		sf[i] = reflect.StructField{
			Name: goFieldName(f.name),
			Type: f.Node.GoType(),
			Tag:  reflect.StructTag(`parquet:"` + f.name + `"`),
		}
	}
	return reflect.StructOf(sf)
}

func goFieldName(s string) string {
	parts := strings.Split(s, "_")
	for i, p := range parts {
		if p != "" {
			parts[i] = strings.ToUpper(p[:1]) + p[1:]
		}
	}
	return strings.Join(parts, "")
}

// plainInt64 is parquet-go's INT64 type without the INT(64,true) logical
// type annotation parquet-go adds by default: AWS's schema has a bare
// "optional int64 size;".
type plainInt64 struct{ parquet.Type }

func (plainInt64) LogicalType() *format.LogicalType { return nil }

// parquetSchema builds the s3.inventory message for the selected fields with
// the physical and legacy converted types AWS documents: binary (UTF8),
// int64, boolean, int64 (TIMESTAMP_MILLIS).
func parquetSchema(fs []*field) *parquet.Schema {
	g := make(orderedGroup, len(fs))
	for i, f := range fs {
		var n parquet.Node
		switch f.kind {
		case kString:
			n = parquet.String()
		case kInt64:
			n = parquet.Leaf(plainInt64{parquet.Int64Type})
		case kBool:
			n = parquet.Leaf(parquet.BooleanType)
		case kTime:
			n = parquet.Timestamp(parquet.Millisecond)
		}
		if f.required {
			n = parquet.Required(n)
		} else {
			n = parquet.Optional(n)
		}
		g[i] = orderedField{Node: n, name: f.pq}
	}
	return parquet.NewSchema("s3.inventory", g)
}
