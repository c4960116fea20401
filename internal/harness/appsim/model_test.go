package appsim

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

func TestJudge(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	m := NewModel()
	k := ObjKey{Kind: keylayout.KindThumbnail}
	p := &Photo{ID: "p", Objects: map[ObjKey]*Object{k: {Versions: []Version{
		{Hash: "v1", Start: at(0), End: at(1)},
		{Hash: "v2", Start: at(10), End: at(12)},
		{Hash: "", Start: at(20), End: at(21)}, // deleted
	}}}}
	m.addPhoto(p)
	cases := []struct {
		name   string
		got    string
		failed bool
		rs, re int
		want   Verdict
	}{
		{"the only completed write", "v1", false, 5, 6, ReadOK},
		{"a write in flight when the read began", "v2", false, 11, 13, ReadOK},
		{"the previous bytes while a write is in flight", "v1", false, 11, 13, ReadOK},
		{"a write that started during the read", "v2", false, 9, 11, ReadOK},
		{"older bytes than the last completed write", "v1", false, 13, 14, ReadStale},
		{"nothing where bytes must be", "", false, 13, 14, ReadMissing},
		{"bytes nobody wrote", "zz", false, 13, 14, ReadUnknown},
		{"a deleted object is absent", "", false, 22, 23, ReadOK},
		{"a deleted object came back", "v2", false, 22, 23, ReadReappeared},
		{"the delete in flight", "v2", false, 20, 20, ReadOK},
		{"an error", "", true, 13, 14, ReadError},
	}
	for _, c := range cases {
		require.Equal(t, c.want, m.Judge("p", k, c.got, c.failed, at(c.rs), at(c.re)), c.name)
	}

	// A change of owner excuses failures that overlap it, not stale bytes.
	p.Events = append(p.Events, Event{Kind: "change_owner", Start: at(13), End: at(15)})
	require.Equal(t, ReadExcused, m.Judge("p", k, "", false, at(14), at(16)))
	require.Equal(t, ReadExcused, m.Judge("p", k, "", true, at(12), at(13).Add(time.Millisecond)))
	require.Equal(t, ReadStale, m.Judge("p", k, "v1", false, at(14), at(16)))
	require.Equal(t, ReadMissing, m.Judge("p", k, "", false, at(16), at(17)))
}

func TestHeadersDiff(t *testing.T) {
	t.Parallel()
	h := Headers{ContentType: "image/jpeg", CacheControl: "private", ContentDisposition: "attachment", Metadata: map[string]string{"a": "1"},
		ContentEncoding: "br", Expires: "Wed, 01 Jan 2031 00:00:00 GMT", Tags: map[string]string{"shape": "large"},
		Checksums: map[string]string{"CRC32C": "abc=", "SHA256": "def="}}
	require.Empty(t, h.Diff(h, false))
	for name, change := range map[string]func(g *Headers){
		"Cache-Control":    func(g *Headers) { g.CacheControl = "" },
		"metadata":         func(g *Headers) { g.Metadata = map[string]string{"a": "2"} },
		"metadata ":        func(g *Headers) { g.Metadata = nil },
		"Content-Encoding": func(g *Headers) { g.ContentEncoding = "" },
		"Expires":          func(g *Headers) { g.Expires = "" },
		"tags":             func(g *Headers) { g.Tags = nil },
		"tags ":            func(g *Headers) { g.Tags = map[string]string{"shape": "small"} },
		"SHA256 checksum":  func(g *Headers) { g.Checksums = map[string]string{"SHA256": "xyz="} },
		"none of":          func(g *Headers) { g.Checksums = map[string]string{"CRC64NVME": "q="} },
	} {
		got := h
		change(&got)
		require.Contains(t, h.Diff(got, false), strings.TrimSpace(name))
	}
	got := h
	got.Expires = "Wednesday, 01-Jan-31 00:00:00 GMT" // the same date, formatted anew (RFC 850)
	require.Empty(t, h.Diff(got, false))
	got = h
	got.Checksums = map[string]string{"CRC64NVME": "q="}
	require.Empty(t, h.Diff(got, true), "a multipart copy carries the algorithm the worker asked for")
}

// TestExcuseInPlace: a copy older than a rewrite of the legacy key in place
// is excused only before its swap, or after it when its record names that
// older source and the rewrite completed after the copy was recorded.
func TestExcuseInPlace(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	o := Object{Legacy: "thumbnails/j.jpg", Versions: []Version{
		{Hash: "v1", Start: at(0), End: at(0)},
		{Hash: "v2", Start: at(10), End: at(11), InPlace: true, ETag: `"e2"`},
	}}
	cases := []struct {
		name string
		rec  CopyRecord
		got  string
		want Verdict
		why  string
	}{
		{"not yet committed", CopyRecord{Found: true, SourceETag: `"e1"`, CopiedAt: at(5)}, "v1", ReadCopyInFlight, ""},
		{"rewrite after the copy was recorded", CopyRecord{Found: true, SourceETag: `"e1"`, CopiedAt: at(10), Committed: true}, "v1", ReadRewriteLostByDesign, ""},
		{"rewrite before the copy was recorded", CopyRecord{Found: true, SourceETag: `"e1"`, CopiedAt: at(12), Committed: true}, "v1", "", "before the copy was recorded"},
		{"the record claims the newer bytes (a proof skipped)", CopyRecord{Found: true, SourceETag: `"e2"`, CopiedAt: at(10), Committed: true}, "v1", "", "stands for version 2"},
		{"no copy recorded", CopyRecord{}, "v1", "", "no copy"},
		{"the newest bytes", CopyRecord{Found: true, SourceETag: `"e2"`, CopiedAt: at(12), Committed: true}, "v2", "", "not an older version"},
	}
	for _, c := range cases {
		v, why := ExcuseInPlace(o, c.got, c.rec)
		require.Equal(t, c.want, v, c.name)
		require.Contains(t, why, c.why, c.name)
	}
	require.Empty(t, LostByDesign(o, CopyRecord{Found: true, SourceETag: `"e1"`, CopiedAt: at(10), Committed: true}))
	require.Contains(t, LostByDesign(o, CopyRecord{Found: true, SourceETag: `"e1"`, CopiedAt: at(12), Committed: true}), "before the copy was recorded")
	users := o
	users.Versions = append(append([]Version(nil), o.Versions...), Version{Hash: "v3", Start: at(20), End: at(21)})
	v, why := ExcuseInPlace(users, "v1", CopyRecord{Found: true, SourceETag: `"e1"`, CopiedAt: at(10), Committed: true})
	require.Empty(t, v)
	require.Contains(t, why, "under users/")
}
