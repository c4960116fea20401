package inventory

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/parquet-go/parquet-go/format"
)

// pqCol maps one leaf column of a Parquet data file to an Object field.
type pqCol struct {
	f    *field
	unit time.Duration // int64 timestamps: the duration of one unit
}

// rowBatch is how many rows are decoded at a time; with the page buffers of
// the row group being read, it is what a Parquet read holds in memory.
const rowBatch = 256

// readParquet parses a verified Parquet data file, whose own schema (not the
// manifest's text) says where each column is. Columns are matched by their
// AWS names; unknown and nested columns are skipped; a known column of a
// physical type its field cannot hold is refused before any row is read.
func (r *Reader) readParquet(ctx context.Context, ra io.ReaderAt, size int64, fn func(Object) error) error {
	pf, err := parquet.OpenFile(ra, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return fmt.Errorf("%w: parquet: %w", ErrFormat, err)
	}
	cols, err := parquetColumns(pf.Schema())
	if err != nil {
		return err
	}
	rows := make([]parquet.Row, rowBatch)
	for _, rg := range pf.RowGroups() {
		if err := readRowGroup(ctx, rg, cols, rows, r.checkRecord, fn); err != nil {
			return err
		}
	}
	return nil
}

func parquetColumns(schema *parquet.Schema) ([]pqCol, error) {
	cols := make([]pqCol, len(schema.Columns()))
	var seen FieldSet
	for _, p := range schema.Columns() {
		leaf, _ := schema.Lookup(p...)
		if len(p) != 1 {
			continue
		}
		fd := fieldByParquet[p[0]]
		if fd == nil {
			continue
		}
		kind := leaf.Node.Type().Kind()
		ok := false
		switch fd.kind {
		case kString:
			ok = kind == parquet.ByteArray || kind == parquet.FixedLenByteArray
		case kInt64:
			ok = kind == parquet.Int64 || kind == parquet.Int32
		case kBool:
			ok = kind == parquet.Boolean
		case kTime:
			ok = kind == parquet.Int64 || kind == parquet.Int96 || kind == parquet.ByteArray
		}
		if !ok {
			return nil, fmt.Errorf("%w: parquet column %s has type %s", ErrFormat, fd.pq, kind)
		}
		c := pqCol{f: fd, unit: time.Millisecond}
		if fd.kind == kTime {
			c.unit = timestampUnit(leaf.Node.Type())
		}
		cols[leaf.ColumnIndex] = c
		seen |= fd.bit
	}
	if !seen.Has(FieldBucket | FieldKey) {
		return nil, fmt.Errorf("%w: parquet file lacks a bucket or key column", ErrFormat)
	}
	return cols, nil
}

func readRowGroup(ctx context.Context, rg parquet.RowGroup, cols []pqCol, rows []parquet.Row, check func(*Object) error, fn func(Object) error) error {
	rr := rg.Rows()
	defer rr.Close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := rr.ReadRows(rows)
		for _, row := range rows[:n] {
			var o Object
			for _, v := range row {
				if v.IsNull() {
					continue
				}
				c := cols[v.Column()]
				if c.f == nil {
					continue
				}
				if err := setParquet(&o, c, v); err != nil {
					return fmt.Errorf("%w: column %s: %w", ErrFormat, c.f.pq, err)
				}
				o.Present |= c.f.bit
			}
			if err := check(&o); err != nil {
				return err
			}
			if err := fn(o); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: parquet: %w", ErrFormat, err)
		}
	}
}

func timestampUnit(t parquet.Type) time.Duration {
	if lt := t.LogicalType(); lt != nil {
		if ts, ok := lt.Value.(*format.TimestampType); ok {
			switch ts.Unit.Value.(type) {
			case *format.MicroSeconds:
				return time.Microsecond
			case *format.NanoSeconds:
				return time.Nanosecond
			}
			return time.Millisecond
		}
	}
	if ct := t.ConvertedType(); ct != nil && *ct == deprecated.TimestampMicros {
		return time.Microsecond
	}
	return time.Millisecond
}

func setParquet(o *Object, c pqCol, v parquet.Value) error {
	f := c.f
	switch f.kind {
	case kString:
		*f.str(o) = string(v.ByteArray()) // a copy: the page buffer is reused
	case kInt64:
		switch v.Kind() {
		case parquet.Int64:
			*f.i64(o) = v.Int64()
		case parquet.Int32:
			*f.i64(o) = int64(v.Int32())
		}
	case kBool:
		*f.bln(o) = v.Boolean()
	case kTime:
		var t time.Time
		switch v.Kind() {
		case parquet.Int64:
			switch c.unit {
			case time.Microsecond:
				t = time.UnixMicro(v.Int64())
			case time.Nanosecond:
				t = time.Unix(0, v.Int64())
			default:
				t = time.UnixMilli(v.Int64())
			}
		case parquet.Int96: // legacy Hive/Impala timestamps
			i := v.Int96()
			nanos := int64(uint64(i[1])<<32 | uint64(i[0]))
			days := int64(i[2]) - 2440588 // Julian day of 1970-01-01
			t = time.Unix(days*86400, nanos)
		case parquet.ByteArray:
			var err error
			if t, err = time.Parse(time.RFC3339Nano, string(v.ByteArray())); err != nil {
				return err
			}
		}
		*f.tim(o) = t.UTC()
	}
	return nil
}
