package inventory

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"
)

// readCSV parses a verified CSV data file: gzip (possibly several members,
// which Go's gzip reader reads as one stream), no header row, one column per
// fileSchema entry in that order, every value quoted (observed) and the key
// URL-encoded (documented). Blank lines are skipped by encoding/csv.
func (r *Reader) readCSV(ctx context.Context, fh io.Reader, fn func(Object) error) error {
	cols := schemaColumns(r.m)
	colFields := make([]*field, len(cols))
	for i, c := range cols {
		colFields[i] = lookupCSVField(c) // nil: a column this package does not know; skipped
	}
	gz, err := gzip.NewReader(bufio.NewReaderSize(fh, 256<<10))
	if err != nil {
		return fmt.Errorf("%w: gzip: %w", ErrFormat, err)
	}
	defer gz.Close()
	cr := csv.NewReader(gz)
	cr.FieldsPerRecord = len(cols) // a row with another count is refused
	cr.ReuseRecord = true
	for n := 1; ; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		rec, err := cr.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrFormat, err)
		}
		var o Object
		for i, v := range rec {
			fd := colFields[i]
			if fd == nil || v == "" {
				continue
			}
			if err := setCSV(&o, fd, v); err != nil {
				line, _ := cr.FieldPos(i)
				return fmt.Errorf("%w: line %d: %s: %w", ErrFormat, line, fd.csv, err)
			}
			o.Present |= fd.bit
		}
		if err := r.checkRecord(&o); err != nil {
			line, _ := cr.FieldPos(0)
			return fmt.Errorf("line %d: %w", line, err)
		}
		if err := fn(o); err != nil {
			return err
		}
	}
}

func setCSV(o *Object, f *field, v string) error {
	switch f.kind {
	case kString:
		if f.bit == FieldKey {
			k, err := DecodeKey(v)
			if err != nil {
				return err
			}
			v = k
		}
		*f.str(o) = v
	case kInt64:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return err
		}
		*f.i64(o) = n
	case kBool:
		b, err := strconv.ParseBool(v)
		if err != nil {
			return err
		}
		*f.bln(o) = b
	case kTime:
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return err
		}
		*f.tim(o) = t.UTC()
	}
	return nil
}
