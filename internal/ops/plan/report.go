package plan

import (
	"sort"
	"time"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// Report is the plan.
type Report struct {
	Bucket  string    `json:"bucket"`
	At      time.Time `json:"at"`
	Seconds float64   `json:"seconds"`
	// Phases are the seconds spent listing, reading the rows, joining them
	// in Postgres and calibrating.
	Phases   map[string]float64 `json:"phase_seconds"`
	Listing  Listing            `json:"listing"`
	Photos   Photos             `json:"photos"`
	Copies   Copies             `json:"copies"`
	Largest  []Object           `json:"largest_objects"`
	Problems []Problem          `json:"problems"`
	// AlreadyMoved counts listed legacy objects the ledger records as moved
	// (a plan made after a first stage): neither work left nor orphans.
	AlreadyMoved int64    `json:"already_moved"`
	Estimate     Estimate `json:"estimate"`

	// Ranges is how many ranges of job ids the plan analysed one at a
	// time in Postgres (1: the whole bucket at once).
	Ranges int `json:"ranges"`
	// RangesNote says why a plan that would have been split was not.
	RangesNote string `json:"ranges_note,omitempty"`
	// Partial, on a shard's report (Options.Shards), is what Merge needs:
	// the report's figures are then the shard's alone.
	Partial *Partial `json:"partial,omitempty"`

	problems map[string]*Problem
	top      topK // the largest objects so far
}

// Totals are a count of objects and their bytes.
type Totals struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
}

// Listing is what the listing of the legacy prefixes found (or, with an
// inventory, what the inventory says they held at its date).
type Listing struct {
	Prefixes       map[string]Totals `json:"prefixes"`
	ByStorageClass map[string]Totals `json:"by_storage_class"`
	Objects        int64             `json:"objects"`
	Bytes          int64             `json:"bytes"`
	// Requests are the ListObjectsV2 calls the plan made, over Shards key
	// ranges listed in parallel (none with an inventory).
	Requests int64   `json:"requests"`
	Shards   int     `json:"shards"`
	Seconds  float64 `json:"seconds"`
	// Inventory, if set, is the S3 Inventory report the objects were read
	// from instead of a listing, in InventoryPages pages of its index.
	Inventory      *InventorySource `json:"inventory,omitempty"`
	InventoryPages int64            `json:"inventory_pages,omitempty"`
}

// InventorySource is the report a plan read the objects from. The plan is
// as of CreatedAt: objects written since are missing from it, objects
// deleted since are counted (docs/inventory.md, staleness).
type InventorySource struct {
	Location  string    `json:"location"`
	CreatedAt time.Time `json:"created_at"`
	// AgeSeconds is the report's age when the plan was made.
	AgeSeconds float64 `json:"age_seconds"`
	Objects    int64   `json:"report_objects"`
}

// Photos counts the rows that reference a legacy key, by what a worker would
// do with them.
type Photos struct {
	LegacyRows       int64 `json:"legacy_rows"`
	ToMigrate        int64 `json:"to_migrate"`
	Ownerless        int64 `json:"ownerless"`
	Archived         int64 `json:"archived"`
	InvalidID        int64 `json:"invalid_ids"`
	UnrecognisedKeys int64 `json:"unrecognised_keys"`
}

// Copies are the objects the workers will copy for the photos to migrate.
type Copies struct {
	Objects int64 `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// Multipart copies are above the multipart threshold, in Parts
	// UploadPartCopy requests.
	Multipart int64                        `json:"multipart"`
	Parts     int64                        `json:"parts"`
	ByKind    map[string]ledger.KindTotals `json:"by_kind"`
}

// Object is one listed object.
type Object struct {
	Key          string `json:"key"`
	Size         int64  `json:"size"`
	StorageClass string `json:"storage_class"`
	Multipart    bool   `json:"multipart_copy"`
}

// Problem is one kind of trouble found before it becomes a dead letter.
type Problem struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
	Bytes int64  `json:"bytes,omitempty"`
	// Outcome says what the migration will do about it (and what to do).
	Outcome  string              `json:"outcome"`
	Examples []ledger.KeyExample `json:"examples"`
}

// The problems, in the order they are shown.
const (
	probMissing            = "rows_pointing_at_missing_objects"
	probUnrecognisedObject = "unrecognised_legacy_objects"
	probUnrecognisedRows   = "rows_with_unrecognised_keys"
	probInvalidIDs         = "invalid_owner_or_photo_ids"
	probOwnerless          = "ownerless_photos"
	probSharedKeys         = "legacy_objects_shared_by_rows"
	probSharedDerived      = "derived_objects_shared_by_rows"
	probArchiveClass       = "objects_in_archive_storage_classes"
	probOrphans            = "orphans"
)

var problemOrder = []struct{ name, outcome string }{
	{probMissing, "dead letters (source_missing): find the objects or fix the rows before the run"},
	{probUnrecognisedObject, "keys under the legacy prefixes that match no pattern of the layout: a photo whose job owns one is dead-lettered (unrecognised_legacy_key); others are never touched"},
	{probUnrecognisedRows, "dead letters (unrecognised_legacy_key): fix the rows' keys first"},
	{probInvalidIDs, "dead letters (invalid_owner_id): fix the owners first"},
	{probOwnerless, "archived by the workers, not moved: review them (migratectl archived report, then archived assign)"},
	{probSharedKeys, "copied once per row into each owner's prefix; cleanup keeps the legacy object until every row sharing it is migrated"},
	{probSharedDerived, "animations and metadata of a job several rows derive: copied once per row, kept until every such row is migrated"},
	{probArchiveClass, "copies fail (InvalidObjectState, dead letter source_unreadable) until the objects are restored: restore them first"},
	{probOrphans, "no row references them: never moved, never deleted; reported for a decision"},
}

func newReport(bucket string, o Options) *Report {
	r := &Report{
		Bucket:   bucket,
		At:       time.Now().UTC(),
		Listing:  Listing{Prefixes: map[string]Totals{}, ByStorageClass: map[string]Totals{}},
		Copies:   Copies{ByKind: map[string]ledger.KindTotals{}},
		Largest:  []Object{},
		Phases:   map[string]float64{},
		problems: map[string]*Problem{},
		top:      topK{k: o.Top},
	}
	for _, p := range problemOrder {
		r.Problems = append(r.Problems, Problem{Name: p.name, Outcome: p.outcome, Examples: []ledger.KeyExample{}})
	}
	for i := range r.Problems {
		r.problems[r.Problems[i].Name] = &r.Problems[i]
	}
	return r
}

// Problem returns the problem of that name.
func (r *Report) Problem(name string) Problem {
	for _, p := range r.Problems {
		if p.Name == name {
			return p
		}
	}
	return Problem{Name: name}
}

// example counts one occurrence of a problem found in Go and keeps it as an
// example while there is room.
func (r *Report) example(name string, e ledger.KeyExample, o Options) {
	p := r.problems[name]
	p.Count++
	if len(p.Examples) < o.Examples {
		p.Examples = append(p.Examples, e)
	}
}

// findings folds the joins' results into the report.
func (r *Report) findings(f *ledger.PlanFindings) {
	set := func(name string, n, bytes int64, ex []ledger.KeyExample) {
		p := r.problems[name]
		p.Count, p.Bytes = n, bytes
		if ex != nil {
			p.Examples = ex
		}
	}
	set(probMissing, f.MissingRefs, 0, f.MissingExamples)
	set(probSharedKeys, f.SharedKeys, 0, f.SharedKeyExamples)
	set(probSharedDerived, f.SharedDerived, 0, nil)
	set(probArchiveClass, f.ArchiveClassCopies, 0, f.ArchiveClassExamples)
	set(probOrphans, f.Orphans, f.OrphanBytes, f.OrphanExamples)
	r.problems[probOwnerless].Count = r.Photos.Ownerless
	r.AlreadyMoved = f.AlreadyMoved
	r.Copies.ByKind = f.Copies
	for _, t := range f.Copies {
		r.Copies.Objects += t.Objects
		r.Copies.Bytes += t.Bytes
		r.Copies.Multipart += t.Multipart
		r.Copies.Parts += t.Parts
	}
}

// kinds returns the keys of m in keylayout order.
func kinds[T any](m map[string]T) []string {
	order := map[string]int{"original": 0, "restored": 1, "thumbnail": 2, "metadata": 3, "animation": 4}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		oi, iok := order[out[i]]
		oj, jok := order[out[j]]
		if iok != jok {
			return iok
		}
		if oi != oj {
			return oi < oj
		}
		return out[i] < out[j]
	})
	return out
}
