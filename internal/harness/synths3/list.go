package synths3

import (
	"encoding/base64"
	"encoding/xml"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/keylayout"
)

// scanBudget bounds the jobs one ListObjectsV2 request examines. A listing
// whose objects were mostly deleted (legacy prefixes after cleanup) would
// otherwise walk the whole keyspace in one request; S3 too may return fewer
// keys than asked with IsTruncated set, and the client continues.
const scanBudget = 100_000

// listEntry is one key of a listing, or a budget frontier: every key up to
// key was examined and the request must stop there.
type listEntry struct {
	key          string
	size         int64
	etag         string
	class        string
	lastModified time.Time
	frontier     bool
}

// lister yields keys in order, each greater than the bound it was last
// sought to.
type lister interface {
	head() (listEntry, bool)
	pop()
	seek(after string)
}

// familyLister walks one legacy prefix's jobs in key order.
type familyLister struct {
	s       *Server
	f       family
	prefix  string // the listing's prefix: the walk stops past it
	after   string
	j       int64 // next job rank to examine
	pending []listEntry
	done    bool
	budget  *int
	// frontier: every key <= frontier was examined.
	frontier string
}

// base is what every key of the job of rank j in f starts with: the prefix
// and the job id's first 13 characters, which alone order the jobs.
// base(j)+"\xff" is greater than every one of those keys.
func (l *familyLister) base(j int64) string { return l.f.prefix + jobHeadString(l.s.ks.jobHead(j)) }

// jobHeadString is "%08x-%04x" of h>>16 and h&0xffff, as JobID writes it.
func jobHeadString(h int64) string {
	const digits = "0123456789abcdef"
	var b [13]byte
	for k := 12; k >= 0; k-- {
		if k == 8 {
			b[k] = '-'
			continue
		}
		b[k] = digits[h&15]
		h >>= 4
	}
	return string(b[:])
}

func (l *familyLister) seek(after string) {
	l.after, l.frontier, l.pending, l.done = after, after, nil, false
	bound := max(after, l.prefix)
	n := l.s.ks.Photos()
	// The first job whose keys can be > bound: every key of job j starts
	// with base(j), and base(j)+"\xff" is above all of them.
	l.j = int64(sort.Search(int(n), func(j int) bool { return l.base(int64(j))+"\xff" > bound }))
}

func (l *familyLister) head() (listEntry, bool) {
	for len(l.pending) == 0 {
		if l.done {
			return listEntry{}, false
		}
		if l.j >= l.s.ks.Photos() {
			l.done = true
			continue
		}
		if b := l.base(l.j); b > l.prefix && !strings.HasPrefix(b, l.prefix) {
			l.done = true // past the listing's prefix
			continue
		}
		if *l.budget <= 0 {
			return listEntry{key: l.frontier, frontier: true}, true
		}
		*l.budget--
		l.examine(l.j)
		l.frontier = l.base(l.j) + "\xff"
		l.j++
	}
	return l.pending[0], true
}

// examine queues the existing keys of the job of rank j that are > after.
func (l *familyLister) examine(j int64) {
	i := l.s.ks.photoAt(j)
	var a *attrs
	for _, sl := range l.f.slots {
		if l.s.state.legacyGone.get(i*SlotsPerPhoto + int64(sl)) {
			continue // deleted: known without hashing
		}
		if a == nil {
			v := attrsOf(i)
			a = &v
		}
		if !a.has(sl) {
			continue
		}
		o := l.s.ks.objectOf(*a, sl)
		if o.LegacyKey <= l.after {
			continue
		}
		l.pending = append(l.pending, listEntry{key: o.LegacyKey, size: o.Size, etag: o.ETag, class: o.StorageClass, lastModified: o.LastModified})
	}
	sort.Slice(l.pending, func(x, y int) bool { return l.pending[x].key < l.pending[y].key })
}

func (l *familyLister) pop() { l.pending = l.pending[1:] }

// sliceLister yields precomputed entries (one photo's user-scoped keys).
type sliceLister struct{ entries []listEntry }

func (l *sliceLister) head() (listEntry, bool) {
	if len(l.entries) == 0 {
		return listEntry{}, false
	}
	return l.entries[0], true
}

func (l *sliceLister) pop() { l.entries = l.entries[1:] }

func (l *sliceLister) seek(after string) {
	i := sort.Search(len(l.entries), func(i int) bool { return l.entries[i].key > after })
	l.entries = l.entries[i:]
}

// extrasLister yields the objects outside the keyspace, a batch at a time.
type extrasLister struct {
	s      *Server
	prefix string
	after  string
	batch  []string
	done   bool
}

func (l *extrasLister) seek(after string) { l.after, l.batch, l.done = after, nil, false }

func (l *extrasLister) head() (listEntry, bool) {
	for {
		if len(l.batch) > 0 {
			k := l.batch[0]
			x, ok := l.s.state.extras.get(k)
			if !ok { // deleted meanwhile
				l.pop()
				continue
			}
			return listEntry{key: k, size: x.size, etag: x.etag, class: x.storageClass, lastModified: x.lastModified}, true
		}
		if l.done {
			return listEntry{}, false
		}
		l.batch = l.s.state.extras.after(l.prefix, l.after, 1000)
		l.done = len(l.batch) < 1000
		if len(l.batch) == 0 {
			return listEntry{}, false
		}
	}
}

func (l *extrasLister) pop() {
	l.after = l.batch[0]
	l.batch = l.batch[1:]
}

// userLister lists the user-scoped keys under prefix, which must name one
// photo's objects (users/{u}/raw/{p}/, users/{u}/thumbs/{p}.…, or deeper):
// the keyspace does not order users/ as a whole. ok is false when the prefix
// is wider; nil (and ok) when no keyspace key can have it.
func (s *Server) userLister(prefix, after string) (lister, bool) {
	rest := strings.TrimPrefix(prefix, keylayout.UserPrefixRoot)
	user, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return nil, false
	}
	if keylayout.ValidateID(user) != nil {
		return nil, true // no photo has this owner (the probe's prefix, say)
	}
	kind, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return nil, false
	}
	sep := "/"
	switch kind {
	case "raw", "processed", "animated":
	case "thumbs", "meta":
		sep = "."
	default:
		return nil, true
	}
	photo, _, ok := strings.Cut(rest, sep)
	if !ok {
		return nil, false
	}
	i, ok := s.ks.photoIndex(photo)
	if !ok {
		return nil, true
	}
	a := attrsOf(i)
	var entries []listEntry
	for sl := Slot(0); sl < SlotsPerPhoto; sl++ {
		if !a.has(sl) || a.ownerless || sl == SlotOrphan || !s.state.present(a, sl, true) {
			continue
		}
		o := s.ks.objectOf(a, sl)
		if o.UserKey > after && strings.HasPrefix(o.UserKey, prefix) {
			entries = append(entries, listEntry{key: o.UserKey, size: o.Size, etag: o.ETag, class: o.StorageClass, lastModified: s.ks.cfg.MigratedAt})
		}
	}
	sort.Slice(entries, func(x, y int) bool { return entries[x].key < entries[y].key })
	return &sliceLister{entries: entries}, true
}

type listResult struct {
	XMLName               xml.Name       `xml:"ListBucketResult"`
	NS                    string         `xml:"xmlns,attr"`
	Name                  string         `xml:"Name"`
	Prefix                string         `xml:"Prefix"`
	Delimiter             string         `xml:"Delimiter,omitempty"`
	MaxKeys               int            `xml:"MaxKeys"`
	KeyCount              int            `xml:"KeyCount"`
	IsTruncated           bool           `xml:"IsTruncated"`
	EncodingType          string         `xml:"EncodingType,omitempty"`
	ContinuationToken     string         `xml:"ContinuationToken,omitempty"`
	NextContinuationToken string         `xml:"NextContinuationToken,omitempty"`
	StartAfter            string         `xml:"StartAfter,omitempty"`
	Contents              []listContent  `xml:"Contents"`
	CommonPrefixes        []commonPrefix `xml:"CommonPrefixes"`
}

type listContent struct {
	Key          string `xml:"Key"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int64  `xml:"Size"`
	StorageClass string `xml:"StorageClass"`
}

type commonPrefix struct {
	Prefix string `xml:"Prefix"`
}

// listObjectsV2 answers ListObjectsV2: keys in S3's order (bytewise), from
// the keyspace's legacy prefixes (generated, never materialised), one
// photo's user-scoped keys, and the extras, merged.
func (s *Server) listObjectsV2(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Has("fetch-owner") && q.Get("fetch-owner") == "true" {
		return notImplemented("ListObjectsV2 with fetch-owner")
	}
	prefix, delim := q.Get("prefix"), q.Get("delimiter")
	enc := q.Get("encoding-type")
	if enc != "" && enc != "url" {
		return s3Error{http.StatusBadRequest, "InvalidArgument", "Invalid Encoding Method specified in Request", ""}
	}
	maxKeys := 1000
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return s3Error{http.StatusBadRequest, "InvalidArgument", "max-keys: " + v, ""}
		}
		maxKeys = min(n, 1000)
	}
	after := q.Get("start-after")
	token := q.Get("continuation-token")
	if token != "" {
		b, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return s3Error{http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect", ""}
		}
		after = string(b)
	}

	budget := s.scanBudget
	var listers []lister
	for _, f := range families {
		if strings.HasPrefix(f.prefix, prefix) || strings.HasPrefix(prefix, f.prefix) {
			listers = append(listers, &familyLister{s: s, f: f, prefix: prefix, budget: &budget})
		}
	}
	switch {
	case strings.HasPrefix(prefix, keylayout.UserPrefixRoot):
		l, ok := s.userLister(prefix, after)
		if !ok {
			return notImplemented("ListObjectsV2 under users/ wider than one photo's prefix (" + prefix + ")")
		}
		if l != nil {
			listers = append(listers, l)
		}
	case strings.HasPrefix(keylayout.UserPrefixRoot, prefix):
		return notImplemented("ListObjectsV2 of users/ as a whole (prefix " + strconv.Quote(prefix) + ")")
	}
	listers = append(listers, &extrasLister{s: s, prefix: prefix})
	for _, l := range listers {
		l.seek(after)
	}

	res := listResult{NS: s3NS, Name: s.opts.Bucket, Prefix: prefix, Delimiter: delim, MaxKeys: maxKeys, ContinuationToken: token, EncodingType: enc}
	if token == "" {
		res.StartAfter = q.Get("start-after")
	}
	last := after
	next := func() (lister, listEntry, bool) {
		var best lister
		var be listEntry
		for _, l := range listers {
			e, ok := l.head()
			if ok && (best == nil || e.key < be.key) {
				best, be = l, e
			}
		}
		return best, be, best != nil
	}
	for res.KeyCount < maxKeys {
		l, e, ok := next()
		if !ok {
			break
		}
		if e.frontier {
			res.IsTruncated, last = true, e.key
			break
		}
		if !strings.HasPrefix(e.key, prefix) {
			if e.key > prefix {
				break // past the prefix: nothing more can match
			}
			l.pop()
			continue
		}
		l.pop()
		if delim != "" {
			if k := strings.Index(e.key[len(prefix):], delim); k >= 0 {
				cp := e.key[:len(prefix)+k+len(delim)]
				res.CommonPrefixes = append(res.CommonPrefixes, commonPrefix{Prefix: cp})
				res.KeyCount++
				last = cp + "\xff" // past every key under cp
				for _, l := range listers {
					l.seek(last)
				}
				continue
			}
		}
		res.Contents = append(res.Contents, listContent{Key: e.key, LastModified: e.lastModified.UTC().Format(isoMillis), ETag: e.etag, Size: e.size, StorageClass: e.class})
		res.KeyCount++
		last = e.key
	}
	if !res.IsTruncated && res.KeyCount == maxKeys && maxKeys > 0 {
		if _, e, ok := next(); ok && (e.frontier || strings.HasPrefix(e.key, prefix)) {
			res.IsTruncated = true
		}
	}
	if res.IsTruncated {
		res.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte(last))
	}
	if enc == "url" {
		res.Prefix, res.Delimiter, res.StartAfter = s3Escape(res.Prefix), s3Escape(res.Delimiter), s3Escape(res.StartAfter)
		for i := range res.Contents {
			res.Contents[i].Key = s3Escape(res.Contents[i].Key)
		}
		for i := range res.CommonPrefixes {
			res.CommonPrefixes[i].Prefix = s3Escape(res.CommonPrefixes[i].Prefix)
		}
	}
	writeXML(w, http.StatusOK, res)
	return nil
}

// s3Escape URL-encodes a key as S3 does with encoding-type=url (slashes
// kept).
func s3Escape(v string) string {
	parts := strings.Split(v, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}
