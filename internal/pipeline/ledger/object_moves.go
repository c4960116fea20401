package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ObjectMoveListByOldKeys returns every recorded move (any photo, any state) from the given
// legacy keys.
func (s *Store) ObjectMoveListByOldKeys(ctx context.Context, oldKeys []string) ([]ObjectMove, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+objectMoveColumns("")+` FROM keymigrate.object_moves
 WHERE job_id = ANY($2) AND old_key = ANY($1) AND discarded_at IS NULL ORDER BY old_key, new_key`, oldKeys, jobsOf(oldKeys))
	if err != nil {
		return nil, fmt.Errorf("read the moves of %d legacy objects: %w", len(oldKeys), err)
	}
	objs, err := pgx.CollectRows(rows, scanObjectMove)
	if err != nil {
		return nil, fmt.Errorf("read the moves of %d legacy objects: %w", len(oldKeys), err)
	}
	return objs, nil
}

// ObjectMove is the one record of an object move, as the worker writes it and
// as rollback, cleanup, verify, the audit and the report read it back: the
// move itself (what was copied where, and what the copy proved) and where it
// stands (the times). Writers fill the first group; readers get what their
// statement selects (the audit keeps no DeleteIntentAt, for instance).
type ObjectMove struct {
	PhotoID           string
	Kind              string
	OldKey            string
	NewKey            string
	Size              int64
	SourceETag        string
	ETag              string
	ChecksumAlgorithm string
	Checksum          string
	// SourceChecksumAlgorithm is the algorithm of the source's own
	// full-object checksum ("" if it carried none): ChecksumAlgorithm is the
	// copy's, which differs where the copy could not carry the source's (a
	// multipart copy). A rollback restoring the legacy object asks for it.
	SourceChecksumAlgorithm string
	VerifyMethod            string
	ContentType             string
	// Superseded is set when the application wrote the new key itself (an
	// object no column references): keymigrate made no copy there, ETag is
	// empty, and the photo no longer needs the legacy object for this key.
	Superseded bool
	// NotCarried names what the copy could not carry (Object Lock retention,
	// a legal hold): reported, never silently dropped.
	NotCarried string

	CopiedAt   *time.Time
	VerifiedAt *time.Time
	// CommittedAt is when the move committed: the photo's row points at the
	// new key (or the derived object's move was recorded as done). Cleanup
	// only considers committed moves; the grace period counts from here.
	CommittedAt *time.Time
	// DeletedAt is when cleanup deleted the legacy object.
	DeletedAt *time.Time
	// NewDeletedAt is when rollback deleted the new copy.
	NewDeletedAt *time.Time
	// SupersededAt is when the application's own write of the new key was
	// found (Superseded is true from then on).
	SupersededAt *time.Time
	// DeleteIntentAt is set when cleanup decided to delete the legacy object
	// and is about to (DeletedAt follows once the delete is known to be done).
	DeleteIntentAt *time.Time
	// Pins are the ETags (with their source's size) that copies to NewKey
	// were expected to have, each recorded before the write that creates the
	// copy was sent (ObjectMovePinSource), oldest first; empty once the move
	// committed.
	Pins []SourcePin
	// DiscardGen counts the discards claimed on the move (ObjectMoveClaimDiscards).
	// A worker sets it, on the moves it commits, to the value its intents
	// recorded (RecordedIntents.Gens): commitObjects refuses a move claimed
	// for a discard since (S1 in docs/soak-findings.md).
	DiscardGen int64
	// DiscardingAt is set while a discard claimed on the move is unsettled:
	// its copy's delete may be in flight.
	DiscardingAt *time.Time
}

// SourcePin is the ETag a copy was expected to have, known before its write
// was sent, and its source's size: for a single-part copy, the source ETag
// it is pinned to (x-amz-copy-source-if-match); for a multipart copy, the
// composite ETag of its copied parts (objstore.CopyExpecting).
type SourcePin struct {
	ETag string
	Size int64
}

// PinnedAs reports whether an object with this ETag and size at NewKey is a
// copy keymigrate sent there (Pins). This is what the ledger knows of a copy
// whose response was lost (F12 in docs/soak-findings.md): its ETag was
// recorded before its write was sent, not learnt from a read. A copy whose
// ETag could not be known before its write (one made first, before any read
// of its source; a KMS-encrypted one) has no pin: when its response is lost
// it is judged as before this record existed.
func (o ObjectMove) PinnedAs(etag string, size int64) bool {
	if etag == "" {
		return false
	}
	for _, p := range o.Pins {
		if p.ETag == etag && p.Size == size {
			return true
		}
	}
	return false
}

// maxPins is how many pins a move keeps (the last ones): each attempt pins
// at most one ETag per key, so eight cover seven attempts in a row whose
// copies' outcomes were all lost, and bound the row's size.
const maxPins = 8

// ObjectMovePinSource records, right before the write that creates a copy at
// newKey is sent, the ETag the copy is expected to have and its source's
// size (see SourcePin, PinnedAs); a pin already recorded is not repeated.
// Only the photo's own open move is updated; one that is not there
// (committed by another worker meanwhile) records nothing, and its copy is
// judged as before.
func (s *Store) ObjectMovePinSource(ctx context.Context, photoID, newKey string, pin SourcePin) error {
	_, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves AS o
   SET pinned_etags = (coalesce(o.pinned_etags, '{}') || $3::text)[greatest(1, coalesce(cardinality(o.pinned_etags), 0) + 2 - $5::int):],
       pinned_sizes = (coalesce(o.pinned_sizes, '{}') || $4::bigint)[greatest(1, coalesce(cardinality(o.pinned_sizes), 0) + 2 - $5::int):]
 WHERE o.new_key = $1 AND o.photo_id = $2 AND o.committed_at IS NULL AND o.discarded_at IS NULL AND o.discarding_at IS NULL
   AND NOT ($3::text = ANY(coalesce(o.pinned_etags, '{}')))`,
		newKey, photoID, pin.ETag, pin.Size, maxPins)
	if err != nil {
		return fmt.Errorf("record the ETag %s the copy to %s is expected to have: %w", pin.ETag, newKey, err)
	}
	return nil
}

// Committed reports whether the move committed (CommittedAt is set).
func (o ObjectMove) Committed() bool { return o.CommittedAt != nil }

// Intent is a copy about to be made.
type Intent struct {
	Kind   string
	OldKey string
	NewKey string
}

// sortByNewKey orders moves by new key: every statement that locks several
// object_moves rows takes them in this order, so two workers on one photo
// cannot deadlock.
func sortByNewKey[T any](items []T, key func(T) string) {
	sort.Slice(items, func(i, j int) bool { return key(items[i]) < key(items[j]) })
}

// RecordedIntents is what ObjectMoveRecordIntents found.
type RecordedIntents struct {
	// Stale are the photo's open copies whose new keys are no longer in the
	// plan: the caller discards them.
	Stale []ObjectMove
	// Gens maps each planned key that is the photo's open move to its
	// discard_gen as the intents recorded it: the worker commits the move
	// only if it is still that (commitObjects).
	Gens map[string]int64
	// Claimed are planned keys under an unsettled discard (DiscardingAt set):
	// left as they are, with the claim's ETag. The caller must not copy to
	// them before that discard is settled: it completes it itself (after the
	// bound, ObjectMoveClaimDiscards) or retries later.
	Claimed []ObjectMove
}

// ObjectMoveRecordIntents notes, before copying, every new key the photo's plan will
// write (so that a process killed between a copy and its record leaves a trace
// of it), and returns the photo's open copies — written for an earlier plan,
// never committed, not yet discarded — whose new keys are no longer in the
// plan: copies under a former owner's prefix, of a column the application has
// since moved. The caller discards them. A planned key whose discard another
// attempt settled is re-opened; one whose discard is unsettled is not
// touched (see RecordedIntents.Claimed).
func (s *Store) ObjectMoveRecordIntents(ctx context.Context, photoID, jobID string, intents []Intent) (RecordedIntents, error) {
	return s.ObjectMoveRecordIntentsKeeping(ctx, photoID, jobID, intents, nil)
}

// ObjectMoveRecordIntentsKeeping is ObjectMoveRecordIntents for a plan whose
// intents are recorded in two parts: keep names the new keys of the part
// recorded before (planned too, so never stale), which this statement leaves
// as they are. A worker that copies the objects a photo's row and the layout
// name before it lists its animations records those intents first (their
// Stale is then not yet known, and not acted on), and the listed animations'
// with keep set to the first part's keys: only then is Stale the photo's
// open copies the whole plan no longer wants.
func (s *Store) ObjectMoveRecordIntentsKeeping(ctx context.Context, photoID, jobID string, intents []Intent, keep []string) (RecordedIntents, error) {
	if keep == nil {
		keep = []string{} // ANY(NULL) would make every open move look planned
	}
	sortByNewKey(intents, func(i Intent) string { return i.NewKey })
	// Never nil: with no intents (the second part of a plan whose photo has
	// no animations) a nil slice is sent as NULL, NOT (new_key = ANY(NULL))
	// is NULL, and no open move would ever come back stale (F17).
	newKeys, kinds, oldKeys, jobs := []string{}, []string{}, []string{}, []string{}
	for _, i := range intents {
		newKeys, kinds, oldKeys = append(newKeys, i.NewKey), append(kinds, i.Kind), append(oldKeys, i.OldKey)
		// The legacy key's own job, as every other writer records it: lookups
		// by legacy key go through job_id.
		job := JobOf(i.OldKey)
		if job == "" {
			job = jobID
		}
		jobs = append(jobs, job)
	}
	// Every planned move of the photo is returned by the upsert (planned =
	// true) with its values after it, so its discard_gen and claim are those
	// this statement recorded or found; a move under an unsettled discard
	// (discarding_at set) is rewritten with its own values. The stale moves
	// are read from the statement's snapshot.
	rows, err := s.pool.Query(ctx, `
WITH ins AS (
  INSERT INTO keymigrate.object_moves AS o (new_key, photo_id, kind, old_key, job_id, size)
  SELECT nk, $1, k, ok, nullif(j, ''), 0 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS t(nk, k, ok, j)
  ON CONFLICT (new_key) DO UPDATE
     SET old_key = CASE WHEN o.discarding_at IS NULL THEN EXCLUDED.old_key ELSE o.old_key END,
         kind = CASE WHEN o.discarding_at IS NULL THEN EXCLUDED.kind ELSE o.kind END,
         job_id = CASE WHEN o.discarding_at IS NULL THEN EXCLUDED.job_id ELSE o.job_id END,
         etag = CASE WHEN o.discarding_at IS NULL AND (o.discarded_at IS NOT NULL OR o.new_deleted_at IS NOT NULL) THEN NULL ELSE o.etag END,
         pinned_etags = CASE WHEN o.discarding_at IS NULL AND (o.discarded_at IS NOT NULL OR o.new_deleted_at IS NOT NULL) THEN NULL ELSE o.pinned_etags END,
         pinned_sizes = CASE WHEN o.discarding_at IS NULL AND (o.discarded_at IS NOT NULL OR o.new_deleted_at IS NOT NULL) THEN NULL ELSE o.pinned_sizes END,
         discarded_at = CASE WHEN o.discarding_at IS NULL THEN NULL ELSE o.discarded_at END
   WHERE o.photo_id = EXCLUDED.photo_id AND o.committed_at IS NULL
  RETURNING true, `+objectMoveColumns("o.")+`)
SELECT * FROM ins
UNION ALL
SELECT false, `+objectMoveColumns("")+` FROM keymigrate.object_moves
 WHERE photo_id = $1 AND committed_at IS NULL AND discarded_at IS NULL AND new_deleted_at IS NULL
   AND superseded_at IS NULL AND NOT (new_key = ANY($2::text[])) AND NOT (new_key = ANY($6::text[]))
 ORDER BY 5`, photoID, newKeys, kinds, oldKeys, jobs, keep)
	if err != nil {
		return RecordedIntents{}, fmt.Errorf("record the planned copies of photo %s: %w", photoID, err)
	}
	type tagged struct {
		planned bool
		o       ObjectMove
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (tagged, error) {
		var t tagged
		o, err := scanObjectMoveAfter(r, &t.planned)
		t.o = o
		return t, err
	})
	if err != nil {
		return RecordedIntents{}, fmt.Errorf("record the planned copies of photo %s: %w", photoID, err)
	}
	out := RecordedIntents{Gens: map[string]int64{}}
	for _, t := range got {
		switch {
		case !t.planned:
			out.Stale = append(out.Stale, t.o)
		case t.o.DiscardingAt != nil:
			out.Claimed = append(out.Claimed, t.o)
		default:
			out.Gens[t.o.NewKey] = t.o.DiscardGen
		}
	}
	return out, nil
}

// ObjectMoveListOpen returns a photo's copies that were never committed and are not
// discarded: what must go if the photo is deleted before its swap.
func (s *Store) ObjectMoveListOpen(ctx context.Context, photoID string) ([]ObjectMove, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+objectMoveColumns("")+` FROM keymigrate.object_moves
 WHERE photo_id = $1 AND committed_at IS NULL AND discarded_at IS NULL AND new_deleted_at IS NULL AND superseded_at IS NULL
 ORDER BY new_key`, photoID)
	if err != nil {
		return nil, fmt.Errorf("read open copies of photo %s: %w", photoID, err)
	}
	objs, err := pgx.CollectRows(rows, scanObjectMove)
	if err != nil {
		return nil, fmt.Errorf("read open copies of photo %s: %w", photoID, err)
	}
	return objs, nil
}

// DiscardClaim is one uncommitted copy to discard: its new key, the ETag its
// delete is conditional on ("" when there is nothing of keymigrate's to
// delete), and the discard_gen of the claim.
type DiscardClaim struct {
	NewKey string
	ETag   string
	Gen    int64
}

// ObjectMoveClaimDiscards claims, before any delete is sent, the discard of
// these uncommitted copies (S1 in docs/soak-findings.md): each claimed move's
// discard_gen goes up by one and its discarding_at is set, so that a swap
// planned before the claim refuses it (commitObjects) and intents leave it
// alone until ObjectMoveSettleDiscards. Only the claimed moves may be deleted,
// each on the returned ETag. A move committed or settled discarded meanwhile
// is not claimed. A move under another attempt's unsettled claim is claimed
// again (taken over, keeping that claim's ETag when it had one) only if the
// claim is older than takeover, the bound after which that attempt's delete
// can no longer land; otherwise its key is returned in busy. Rows are locked
// in new key order, as every statement locking several moves does.
func (s *Store) ObjectMoveClaimDiscards(ctx context.Context, moves []DiscardClaim, takeover time.Duration) (claimed []DiscardClaim, busy []string, err error) {
	if len(moves) == 0 {
		return nil, nil, nil
	}
	sortByNewKey(moves, func(m DiscardClaim) string { return m.NewKey })
	keys, etags := make([]string, 0, len(moves)), make([]string, 0, len(moves))
	for _, m := range moves {
		keys, etags = append(keys, m.NewKey), append(etags, m.ETag)
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT new_key, discarding_at IS NOT NULL AND discarding_at >= now() - $2::float8 * interval '1 microsecond'
  FROM keymigrate.object_moves WHERE new_key = ANY($1) AND committed_at IS NULL AND discarded_at IS NULL
 ORDER BY new_key FOR UPDATE`, keys, takeover.Microseconds())
		if err != nil {
			return fmt.Errorf("lock the moves: %w", err)
		}
		var key string
		var inFlight bool
		free := map[string]bool{}
		if _, err := pgx.ForEachRow(rows, []any{&key, &inFlight}, func() error {
			if inFlight {
				busy = append(busy, key)
			} else {
				free[key] = true
			}
			return nil
		}); err != nil {
			return fmt.Errorf("lock the moves: %w", err)
		}
		var ck, ce []string
		for i, k := range keys {
			if free[k] {
				ck, ce = append(ck, k), append(ce, etags[i])
			}
		}
		if len(ck) == 0 {
			return nil
		}
		rows, err = tx.Query(ctx, `UPDATE keymigrate.object_moves AS o
   SET discard_gen = o.discard_gen + 1, discarding_at = now(),
       discard_etag = CASE WHEN o.discarding_at IS NOT NULL AND o.discard_etag IS NOT NULL THEN o.discard_etag ELSE nullif(t.e, '') END
  FROM unnest($1::text[], $2::text[]) AS t(nk, e)
 WHERE o.new_key = t.nk
RETURNING o.new_key, coalesce(o.discard_etag, ''), o.discard_gen`, ck, ce)
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		claimed, err = pgx.CollectRows(rows, pgx.RowToStructByPos[DiscardClaim])
		if err != nil {
			return fmt.Errorf("claim: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("claim the discard of %d copies: %w", len(moves), err)
	}
	sortByNewKey(claimed, func(m DiscardClaim) string { return m.NewKey })
	return claimed, busy, nil
}

// ObjectMoveSettleDiscards records that the claimed discards are done: each
// copy's delete answered (deleted, not found, or no longer keymigrate's
// bytes), or there was nothing to delete. A move is settled only under the
// claim that was made (its discard_gen): a later takeover of the same move
// settles its own.
func (s *Store) ObjectMoveSettleDiscards(ctx context.Context, claims []DiscardClaim) error {
	if len(claims) == 0 {
		return nil
	}
	sortByNewKey(claims, func(m DiscardClaim) string { return m.NewKey })
	keys, gens := make([]string, 0, len(claims)), make([]int64, 0, len(claims))
	for _, c := range claims {
		keys, gens = append(keys, c.NewKey), append(gens, c.Gen)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves AS o
   SET discarded_at = now(), discarding_at = NULL, discard_etag = NULL
  FROM (SELECT m.new_key, t.g FROM keymigrate.object_moves AS m JOIN unnest($1::text[], $2::bigint[]) AS t(nk, g) ON m.new_key = t.nk
         ORDER BY m.new_key FOR UPDATE OF m) AS l
 WHERE o.new_key = l.new_key AND o.discard_gen = l.g AND o.discarding_at IS NOT NULL`, keys, gens); err != nil {
		return fmt.Errorf("settle the discard of %d copies: %w", len(claims), err)
	}
	return nil
}

// ObjectMoveRecordCopies notes, right after copying and before verifying, the ETag each
// copy's own write returned. A later attempt that finds different bytes at
// such a key may overwrite them only if they are this copy (its source
// changed in between); bytes the ledger does not know were written by someone
// else and are never overwritten.
func (s *Store) ObjectMoveRecordCopies(ctx context.Context, photoID string, moves []ObjectMove) error {
	if len(moves) == 0 {
		return nil
	}
	sortByNewKey(moves, func(m ObjectMove) string { return m.NewKey })
	var newKeys, kinds, oldKeys, srcETags, etags, cts, jobs []string
	var sizes []int64
	for _, m := range moves {
		newKeys, kinds, oldKeys = append(newKeys, m.NewKey), append(kinds, m.Kind), append(oldKeys, m.OldKey)
		srcETags, etags, cts = append(srcETags, m.SourceETag), append(etags, m.ETag), append(cts, m.ContentType)
		jobs = append(jobs, JobOf(m.OldKey))
		sizes = append(sizes, m.Size)
	}
	_, err := s.pool.Exec(ctx, `
INSERT INTO keymigrate.object_moves (new_key, photo_id, kind, old_key, size, source_etag, etag, content_type, job_id, copied_at)
SELECT nk, $1, k, ok, sz, se, e, ct, nullif(j, ''), now()
  FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::text[]) AS t(nk, k, ok, sz, se, e, ct, j)
ON CONFLICT (new_key) DO UPDATE
   SET old_key = EXCLUDED.old_key, size = EXCLUDED.size, source_etag = EXCLUDED.source_etag,
       etag = EXCLUDED.etag, content_type = EXCLUDED.content_type, job_id = EXCLUDED.job_id, copied_at = now(),
       verified_at = NULL, discarded_at = NULL, new_deleted_at = NULL
 WHERE keymigrate.object_moves.photo_id = EXCLUDED.photo_id AND keymigrate.object_moves.discarding_at IS NULL`,
		photoID, newKeys, kinds, oldKeys, sizes, srcETags, etags, cts, jobs)
	if err != nil {
		return fmt.Errorf("record %d copies of photo %s: %w", len(moves), photoID, err)
	}
	return nil
}

// ObjectMoveGetCopy returns the ledger's record of the object at newKey (not
// discarded): which photo it belongs to, the ETag keymigrate's own write
// returned ("" when only the intent was recorded: the process stopped between
// the copy and its record, or the copy never happened), the source's ETag,
// and whether it was superseded or committed.
func (s *Store) ObjectMoveGetCopy(ctx context.Context, newKey string) (ObjectMove, bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+objectMoveColumns("")+`
  FROM keymigrate.object_moves WHERE new_key=$1 AND discarded_at IS NULL`, newKey)
	if err != nil {
		return ObjectMove{}, false, fmt.Errorf("read copy record of %s: %w", newKey, err)
	}
	o, err := pgx.CollectExactlyOneRow(rows, scanObjectMove)
	if errors.Is(err, pgx.ErrNoRows) {
		return ObjectMove{}, false, nil
	}
	if err != nil {
		return ObjectMove{}, false, fmt.Errorf("read copy record of %s: %w", newKey, err)
	}
	return o, true, nil
}

// JobOf returns the legacy job a legacy key belongs to ("" if none): the
// first segment after the prefix, as the ledger indexes it.
func JobOf(oldKey string) string {
	_, rest, ok := strings.Cut(oldKey, "/")
	if !ok {
		return ""
	}
	end := strings.IndexFunc(rest, func(r rune) bool {
		return !(r == '-' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
	})
	if end < 0 {
		end = len(rest)
	}
	return rest[:end]
}

// errDiscarded aborts a swap one of whose moves was claimed for a discard
// after its attempt's intents were recorded.
var errDiscarded = errors.New("a copy this swap would commit was discarded by another attempt since it was planned")

// queueDiscardedSince queues, for a swap's first round trip (twoTrips), the
// lock of the photo's uncommitted moves among objects (sorted here by new key,
// in which order the statement locks them, as before); its read returns
// errDiscarded if one was claimed for a discard since the intents of the
// attempt that commits it (its discard_gen is no longer the one the attempt
// carries in DiscardGen), or is under a discard now. Its copy may be deleted,
// or about to be (S1 in docs/soak-findings.md). A discard claimed after this
// lock finds the move committed and leaves it. With no objects it queues
// nothing.
func queueDiscardedSince(b *pgx.Batch, photoID string, objects []ObjectMove) func(pgx.BatchResults) error {
	if len(objects) == 0 {
		return func(pgx.BatchResults) error { return nil }
	}
	sortByNewKey(objects, func(o ObjectMove) string { return o.NewKey })
	keys := make([]string, 0, len(objects))
	want := make(map[string]int64, len(objects))
	for _, o := range objects {
		keys = append(keys, o.NewKey)
		want[o.NewKey] = o.DiscardGen
	}
	b.Queue(`SELECT new_key, discard_gen, discarding_at IS NOT NULL OR discarded_at IS NOT NULL FROM keymigrate.object_moves
 WHERE new_key = ANY($2) AND photo_id = $1 AND committed_at IS NULL ORDER BY new_key FOR UPDATE`, photoID, keys)
	return func(br pgx.BatchResults) error {
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("read the discards of %d moves: %w", len(keys), err)
		}
		var key string
		var gen int64
		var discarded bool
		var found []string
		if _, err := pgx.ForEachRow(rows, []any{&key, &gen, &discarded}, func() error {
			if discarded || gen != want[key] {
				found = append(found, key)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("read the discards of %d moves: %w", len(keys), err)
		}
		if len(found) > 0 {
			return fmt.Errorf("%w: %s", errDiscarded, strings.Join(found, ", "))
		}
		return nil
	}
}

// queueCommitObjects queues, for a swap's second round trip, the upsert that
// records objects as committed moves of the photo (after
// queueDiscardedSince's lock in the first). With no objects it queues
// nothing.
func queueCommitObjects(b *pgx.Batch, photoID string, objects []ObjectMove) func(pgx.BatchResults) error {
	if len(objects) == 0 {
		return func(pgx.BatchResults) error { return nil }
	}
	cols := make([][]string, 12)
	sizes := make([]int64, 0, len(objects))
	superseded := make([]bool, 0, len(objects))
	sourceAlgs := make([]*string, 0, len(objects))
	for _, o := range objects {
		for i, v := range []string{o.NewKey, o.Kind, o.OldKey, o.SourceETag, o.ETag, o.ChecksumAlgorithm, o.Checksum, o.VerifyMethod, o.ContentType, JobOf(o.OldKey), o.NotCarried} {
			cols[i] = append(cols[i], v)
		}
		sizes = append(sizes, o.Size)
		superseded = append(superseded, o.Superseded)
		sourceAlgs = append(sourceAlgs, sourceChecksumAlgorithm(o))
	}
	b.Queue(`
INSERT INTO keymigrate.object_moves (new_key, photo_id, kind, old_key, source_etag, etag,
       checksum_algorithm, checksum, source_checksum_algorithm, verify_method, content_type, job_id, not_carried, size, superseded_at,
       copied_at, verified_at, committed_at)
SELECT nk, $1, k, ok, se, nullif(e, ''), ca, cs, sca, vm, ct, nullif(j, ''), nullif(nc, ''), sz, CASE WHEN sup THEN now() END,
       CASE WHEN sup THEN NULL ELSE now() END, CASE WHEN sup THEN NULL ELSE now() END, now()
  FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[], $14::bool[], $15::text[])
       AS t(nk, k, ok, se, e, ca, cs, vm, ct, j, nc, sz, sup, sca)
ON CONFLICT (new_key) DO UPDATE SET
       kind = EXCLUDED.kind, old_key = EXCLUDED.old_key, size = EXCLUDED.size, source_etag = EXCLUDED.source_etag,
       etag = EXCLUDED.etag, checksum_algorithm = EXCLUDED.checksum_algorithm, checksum = EXCLUDED.checksum,
       source_checksum_algorithm = EXCLUDED.source_checksum_algorithm,
       verify_method = EXCLUDED.verify_method, content_type = EXCLUDED.content_type, job_id = EXCLUDED.job_id,
       not_carried = EXCLUDED.not_carried, superseded_at = EXCLUDED.superseded_at,
       copied_at = CASE WHEN EXCLUDED.superseded_at IS NULL THEN coalesce(keymigrate.object_moves.copied_at, now()) END,
       verified_at = EXCLUDED.verified_at, committed_at = now(), deleted_at = NULL, discarded_at = NULL, new_deleted_at = NULL,
       pinned_etags = NULL, pinned_sizes = NULL
 WHERE keymigrate.object_moves.photo_id = EXCLUDED.photo_id`,
		photoID, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], cols[9], cols[10], sizes, superseded, sourceAlgs)
	return func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("record %d moves: %w", len(objects), err)
		}
		return nil
	}
}

// sourceChecksumAlgorithm is what object_moves.source_checksum_algorithm
// stores for o: nil (NULL) when the source's algorithm is the copy's, the
// usual case, which then costs no byte; else the source's, "" for none.
func sourceChecksumAlgorithm(o ObjectMove) *string {
	if o.SourceChecksumAlgorithm == o.ChecksumAlgorithm {
		return nil
	}
	return &o.SourceChecksumAlgorithm
}

// objectMoveColumns lists the object_moves columns scanObjectMove reads,
// each prefixed with alias (e.g. "o.").
func objectMoveColumns(alias string) string {
	return strings.ReplaceAll(`#photo_id, #kind, #old_key, #new_key, #size, coalesce(#source_etag, ''), coalesce(#etag, ''),
       coalesce(#checksum_algorithm, ''), coalesce(#checksum, ''),
       coalesce(#source_checksum_algorithm, #checksum_algorithm, ''), #deleted_at, #new_deleted_at,
       #superseded_at IS NOT NULL, #superseded_at, #committed_at, #delete_intent_at, #copied_at,
       coalesce(#pinned_etags, '{}'), coalesce(#pinned_sizes, '{}'), #discard_gen, #discarding_at`, "#", alias)
}

func scanObjectMove(r pgx.CollectableRow) (ObjectMove, error) { return scanObjectMoveAfter(r) }

// scanObjectMoveAfter scans the columns objectMoveColumns lists, after the
// leading columns given by before.
func scanObjectMoveAfter(r pgx.CollectableRow, before ...any) (ObjectMove, error) {
	var o ObjectMove
	var pinETags []string
	var pinSizes []int64
	err := r.Scan(append(before, &o.PhotoID, &o.Kind, &o.OldKey, &o.NewKey, &o.Size, &o.SourceETag, &o.ETag,
		&o.ChecksumAlgorithm, &o.Checksum, &o.SourceChecksumAlgorithm, &o.DeletedAt, &o.NewDeletedAt, &o.Superseded, &o.SupersededAt, &o.CommittedAt, &o.DeleteIntentAt, &o.CopiedAt,
		&pinETags, &pinSizes, &o.DiscardGen, &o.DiscardingAt)...)
	for i := range min(len(pinETags), len(pinSizes)) {
		o.Pins = append(o.Pins, SourcePin{ETag: pinETags[i], Size: pinSizes[i]})
	}
	return o, err
}

// ObjectMoveListOfPhoto returns a photo's committed object moves.
func (s *Store) ObjectMoveListOfPhoto(ctx context.Context, photoID string) ([]ObjectMove, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+objectMoveColumns("")+` FROM keymigrate.object_moves WHERE photo_id = $1 AND committed_at IS NOT NULL ORDER BY new_key`, photoID)
	if err != nil {
		return nil, fmt.Errorf("read moves of photo %s: %w", photoID, err)
	}
	objs, err := pgx.CollectRows(rows, scanObjectMove)
	if err != nil {
		return nil, fmt.Errorf("read moves of photo %s: %w", photoID, err)
	}
	return objs, nil
}

// ObjectMoveListCommitted returns up to limit committed moves after the given new key.
func (s *Store) ObjectMoveListCommitted(ctx context.Context, after string, limit int) ([]ObjectMove, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+objectMoveColumns("")+` FROM keymigrate.object_moves
 WHERE committed_at IS NOT NULL AND new_key > $1 ORDER BY new_key LIMIT $2`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read moved objects: %w", err)
	}
	objs, err := pgx.CollectRows(rows, scanObjectMove)
	if err != nil {
		return nil, fmt.Errorf("read moved objects: %w", err)
	}
	return objs, nil
}

// ObjectMoveOldKeysMoved returns which of keys the ledger records as moved (committed).
func (s *Store) ObjectMoveOldKeysMoved(ctx context.Context, keys []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT old_key FROM keymigrate.object_moves WHERE committed_at IS NOT NULL AND job_id = ANY($2) AND old_key = ANY($1)`, keys, jobsOf(keys))
	if err != nil {
		return nil, fmt.Errorf("look up moved keys: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out[k] = true
	}
	return out, rows.Err()
}

// ObjectMoveDeletedLegacyKeys maps each of jobs to the legacy keys of that job cleanup
// deleted (rows that still derive those objects have lost them), from the
// object moves and the audit rows of compacted photos.
func (s *Store) ObjectMoveDeletedLegacyKeys(ctx context.Context, jobs []string) (map[string][]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT job_id, old_key FROM keymigrate.object_moves
 WHERE job_id = ANY($1) AND deleted_at IS NOT NULL ORDER BY job_id, old_key`, jobs)
	if err != nil {
		return nil, fmt.Errorf("look up deleted legacy objects: %w", err)
	}
	defer rows.Close()
	out := map[string][]string{}
	for rows.Next() {
		var j, k string
		if err := rows.Scan(&j, &k); err != nil {
			return nil, fmt.Errorf("look up deleted legacy objects: %w", err)
		}
		out[j] = append(out[j], k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up deleted legacy objects: %w", err)
	}
	audited, err := s.auditDeletedKeys(ctx, jobs)
	if err != nil {
		return nil, err
	}
	for j, keys := range audited {
		out[j] = append(out[j], keys...)
		slices.Sort(out[j])
		out[j] = slices.Compact(out[j])
	}
	return out, nil
}

// LegacyDeletion is what the ledger records of the deletion of one legacy
// object: the latest deletion cleanup recorded (on any move of it), the
// latest copy back by rollback, a delete intent not yet settled, and a
// deletion by archived purge.
type LegacyDeletion struct {
	OldKey     string
	DeletedAt  *time.Time
	RestoredAt *time.Time
	Intent     bool
	PurgedAt   *time.Time
}

// Gone reports whether the ledger's last word on the object is that it was
// deleted: by cleanup after any rollback copied it back, or by archived purge.
func (d LegacyDeletion) Gone() bool {
	if d.PurgedAt != nil {
		return true
	}
	return d.DeletedAt != nil && (d.RestoredAt == nil || d.DeletedAt.After(*d.RestoredAt))
}

// ObjectMoveLegacyDeletions returns, for those of oldKeys the ledger has a
// move or a purge of, what it records of their deletion (the soak checks that
// every legacy object that is gone has a recorded deletion, and that every
// recorded deletion is really gone).
func (s *Store) ObjectMoveLegacyDeletions(ctx context.Context, oldKeys []string) (map[string]LegacyDeletion, error) {
	out := map[string]LegacyDeletion{}
	rows, err := s.pool.Query(ctx, `SELECT old_key, max(deleted_at), max(restored_at), bool_or(delete_intent_at IS NOT NULL AND deleted_at IS NULL)
  FROM keymigrate.object_moves WHERE job_id = ANY($2) AND old_key = ANY($1) GROUP BY old_key`, oldKeys, jobsOf(oldKeys))
	if err != nil {
		return nil, fmt.Errorf("read the recorded deletions of %d legacy objects: %w", len(oldKeys), err)
	}
	for rows.Next() {
		var d LegacyDeletion
		if err := rows.Scan(&d.OldKey, &d.DeletedAt, &d.RestoredAt, &d.Intent); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read the recorded deletions of legacy objects: %w", err)
		}
		out[d.OldKey] = d
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the recorded deletions of legacy objects: %w", err)
	}
	prows, err := s.pool.Query(ctx, `SELECT old_key, deleted_at FROM keymigrate.purges WHERE old_key = ANY($1) AND deleted_at IS NOT NULL`, oldKeys)
	if err != nil {
		return nil, fmt.Errorf("read the purges of %d legacy objects: %w", len(oldKeys), err)
	}
	defer prows.Close()
	for prows.Next() {
		var k string
		var at time.Time
		if err := prows.Scan(&k, &at); err != nil {
			return nil, fmt.Errorf("read the purges of legacy objects: %w", err)
		}
		d := out[k]
		d.OldKey, d.PurgedAt = k, &at
		out[k] = d
	}
	if err := prows.Err(); err != nil {
		return nil, fmt.Errorf("read the purges of legacy objects: %w", err)
	}
	return out, nil
}

// jobsOf returns the distinct jobs of legacy keys: every lookup by legacy key
// goes through object_moves' job_id index (there is no index on old_key but
// cleanup's partial ones), then filters on the key.
func jobsOf(keys []string) []string {
	seen := make(map[string]bool, len(keys))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if j := JobOf(k); !seen[j] {
			seen[j] = true
			out = append(out, j)
		}
	}
	return out
}

// ObjectMoveMarkRestored records that a legacy object deleted by cleanup was copied back
// from its new key.
func (s *Store) ObjectMoveMarkRestored(ctx context.Context, newKey string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves SET deleted_at = NULL, delete_intent_at = NULL, delete_etag = NULL, restored_at = now() WHERE new_key = $1`, newKey); err != nil {
		return fmt.Errorf("record restore of %s: %w", newKey, err)
	}
	return nil
}

// ObjectMoveMarkNewDeleted records that rollback deleted these new copies.
func (s *Store) ObjectMoveMarkNewDeleted(ctx context.Context, newKeys []string) error {
	if _, err := s.pool.Exec(ctx, `UPDATE keymigrate.object_moves SET new_deleted_at = now(), committed_at = NULL WHERE new_key = ANY($1)`, newKeys); err != nil {
		return fmt.Errorf("record deletion of %d new copies: %w", len(newKeys), err)
	}
	return nil
}

// ObjectMoveListCommittedOfRun returns up to limit committed object moves of the
// photos of run, after the given new key, in new key order.
func (s *Store) ObjectMoveListCommittedOfRun(ctx context.Context, runID, after string, limit int) ([]ObjectMove, error) {
	rows, err := s.pool.Query(ctx, `
SELECT `+objectMoveColumns("o.")+`
  FROM keymigrate.object_moves o JOIN keymigrate.photo_moves p ON p.photo_id = o.photo_id
 WHERE p.run_id = $1 AND o.committed_at IS NOT NULL AND o.new_key > $2
 ORDER BY o.new_key LIMIT $3`, runID, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read committed moves of run %s: %w", runID, err)
	}
	objs, err := pgx.CollectRows(rows, scanObjectMove)
	if err != nil {
		return nil, fmt.Errorf("read committed moves of run %s: %w", runID, err)
	}
	return objs, nil
}
