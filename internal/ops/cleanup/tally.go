package cleanup

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
)

// MaxExamples is how many examples a report keeps of each reason to keep an
// object, of the objects deleted (or, dry, that would be), and of the photos
// the application deleted. The counts are exact; the examples are the first
// found. `--list FILE` has every object.
const MaxExamples = 5

// Report says what a cleanup shard deleted (or, dry, would delete) and what
// it kept, as counts and a bounded number of examples: its size does not grow
// with the bucket. It is also the tally a shard keeps with its cursor in the
// ledger, so a pass's report is the union of its shards' (Merge).
type Report struct {
	Scope  string `json:"scope"`
	Shard  int    `json:"shard"`
	Shards int    `json:"shards"`
	DryRun bool   `json:"dry_run"`
	// Checked counts the legacy objects looked at.
	Checked int64 `json:"checked"`
	// CopiesHeaded counts the new copies HEADed; CopiesVouched those an S3
	// Inventory report vouched for instead (not HEADed).
	CopiesHeaded  int64 `json:"copies_headed"`
	CopiesVouched int64 `json:"copies_vouched"`
	// Deleted counts the legacy objects deleted (dry: that would be), Bytes
	// their size.
	Deleted        int64    `json:"deleted"`
	Bytes          int64    `json:"bytes"`
	DeleteExamples []string `json:"delete_examples"`
	// Kept counts the legacy objects kept, by reason (the Kept* codes).
	Kept         map[string]int64 `json:"kept"`
	KeptExamples []Skip           `json:"kept_examples"`
	// DeletedPhotos counts photos the application deleted (rows gone) that
	// this cleanup found, and recorded as deleted in the ledger.
	DeletedPhotos        int64    `json:"deleted_photos"`
	DeletedPhotoExamples []string `json:"deleted_photo_examples"`
	// Recovered counts deletions a stopped earlier pass made without
	// recording them, recorded now.
	Recovered int64 `json:"recovered"`
	// Finished says the shard (or, merged, every shard) finished its pass;
	// AlreadyFinished that this run found it finished and did nothing.
	Finished        bool `json:"finished"`
	AlreadyFinished bool `json:"already_finished,omitempty"`
	// TookOverFrom names the process whose lapsed lease of the shard this
	// run took over (it died, or lost the database for longer than the
	// lease): this run's news, not part of the shard's tally.
	TookOverFrom string `json:"-"`

	mu   sync.Mutex
	list io.Writer
}

// Skip is a legacy object kept, and why: Kind is one of the Kept* codes,
// Reason the sentence for a person.
type Skip struct {
	PhotoID string `json:"photo_id,omitempty"`
	OldKey  string `json:"old_key"`
	Kind    string `json:"kind"`
	Reason  string `json:"reason"`
}

// KeptTotal is the number of legacy objects kept, all reasons together.
func (r *Report) KeptTotal() int64 {
	var n int64
	for _, v := range r.Kept {
		n += v
	}
	return n
}

// KeptKinds are the reasons objects were kept, sorted.
func (r *Report) KeptKinds() []string {
	kinds := make([]string, 0, len(r.Kept))
	for k := range r.Kept {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// Examples are the kept examples of one reason.
func (r *Report) Examples(kind string) []Skip {
	var out []Skip
	for _, s := range r.KeptExamples {
		if s.Kind == kind {
			out = append(out, s)
		}
	}
	return out
}

func newReport(o Options) *Report {
	return &Report{Scope: Scope(o), Shard: o.Shard, Shards: o.Shards, DryRun: o.DryRun, Kept: map[string]int64{}, list: o.List}
}

// resume loads a shard's tally from its cursor.
func resume(o Options, tally json.RawMessage) (*Report, error) {
	rep := newReport(o)
	if len(tally) == 0 || string(tally) == "{}" {
		return rep, nil
	}
	if err := json.Unmarshal(tally, rep); err != nil {
		return nil, fmt.Errorf("read the tally of cleanup shard %d/%d: %w", o.Shard, o.Shards, err)
	}
	if rep.Kept == nil {
		rep.Kept = map[string]int64{}
	}
	return rep, nil
}

// skip counts a kept object, keeps it as an example if its reason has fewer
// than MaxExamples, and lists it.
func (r *Report) skip(s Skip) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Kept[s.Kind] < MaxExamples {
		r.KeptExamples = append(r.KeptExamples, s)
	}
	r.Kept[s.Kind]++
	r.writeLine("kept", s.OldKey, s.Kind, s.Reason)
}

// deleted counts a deleted (dry: deletable) object.
func (r *Report) deleted(key string, size int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Deleted++
	r.Bytes += size
	if len(r.DeleteExamples) < MaxExamples {
		r.DeleteExamples = append(r.DeleteExamples, key)
	}
	verb := "deleted"
	if r.DryRun {
		verb = "would_delete"
	}
	r.writeLine(verb, key, fmt.Sprint(size), "")
}

func (r *Report) deletedPhoto(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.DeletedPhotos++
	if len(r.DeletedPhotoExamples) < MaxExamples {
		r.DeletedPhotoExamples = append(r.DeletedPhotoExamples, id)
	}
	r.writeLine("deleted_photo", id, "", "")
}

func (r *Report) vouched() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.CopiesVouched++
}

func (r *Report) headed(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.CopiesHeaded += int64(n)
}

func (r *Report) checked(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Checked += int64(n)
}

// writeLine streams one line (tab-separated) to --list; the caller holds mu.
// A write error is not cleanup's failure: the counts stay exact.
func (r *Report) writeLine(what, key, a, b string) {
	if r.list != nil {
		_, _ = fmt.Fprintf(r.list, "%s\t%s\t%s\t%s\n", what, key, a, b)
	}
}

// Merge adds another shard's tally to r: counts add up, examples stay
// bounded, and the result is finished only if both are.
func (r *Report) Merge(o *Report) {
	r.Checked += o.Checked
	r.CopiesHeaded += o.CopiesHeaded
	r.CopiesVouched += o.CopiesVouched
	r.Deleted += o.Deleted
	r.Bytes += o.Bytes
	r.DeletedPhotos += o.DeletedPhotos
	r.Recovered += o.Recovered
	r.Finished = r.Finished && o.Finished
	if r.Kept == nil {
		r.Kept = map[string]int64{}
	}
	for _, s := range o.KeptExamples {
		if len(r.Examples(s.Kind)) < MaxExamples {
			r.KeptExamples = append(r.KeptExamples, s)
		}
	}
	for k, v := range o.Kept {
		r.Kept[k] += v
	}
	r.DeleteExamples = appendBounded(r.DeleteExamples, o.DeleteExamples)
	r.DeletedPhotoExamples = appendBounded(r.DeletedPhotoExamples, o.DeletedPhotoExamples)
}

func appendBounded(a, b []string) []string {
	for _, s := range b {
		if len(a) >= MaxExamples {
			break
		}
		a = append(a, s)
	}
	return a
}

// snapshot is the tally as it stands, for the cursor.
func (r *Report) snapshot() json.RawMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, _ := json.Marshal(r) // a struct of counts and strings: cannot fail
	return b
}
