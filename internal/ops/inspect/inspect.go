// Package inspect tells one photo's whole story for an on-call engineer
// (`migratectl photo ID`): its photos row, its ledger row and history, every
// object move, the failures recorded, whether each key exists in S3 now, and
// what to do next. It changes nothing.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
	"github.com/keymigrate/keymigrate/internal/pipeline/objstore"
)

// Object is one key and what S3 says about it now.
type Object struct {
	Key string `json:"key"`
	// Exists is whether a HEAD found it; Error is set when S3 could not say.
	Exists bool   `json:"exists"`
	Size   int64  `json:"size,omitempty"`
	ETag   string `json:"etag,omitempty"`
	Error  string `json:"error,omitempty"`
}

// Move is one object move with both of its keys as S3 has them now.
type Move struct {
	ledger.ObjectMove
	OldNow Object `json:"old_now"`
	NewNow Object `json:"new_now"`
}

// Story is everything known about one photo.
type Story struct {
	PhotoID string `json:"photo_id"`
	// Row is the application's photos row (nil when it is gone).
	Row *ledger.Photo `json:"row"`
	// RowKeys are the keys the row references, as S3 has them now.
	RowKeys []Object `json:"row_keys"`
	// Ledger is the ledger's row (nil when the ledger never saw the photo).
	Ledger   *ledger.PhotoHistory     `json:"ledger"`
	Moves    []Move                   `json:"object_moves"`
	Failures []ledger.FailureRecorded `json:"failures"`
	// Next says what to do, in order; the first line is the verdict.
	Next []string `json:"next"`
}

// Photo reads the photo's story. Only the photo's own rows are read (by
// primary key or the photo indexes) and one HEAD per key.
func Photo(ctx context.Context, st *ledger.Store, objs *objstore.Store, id string) (Story, error) {
	s := Story{PhotoID: id}
	if err := checkID(ctx, st, id); err != nil {
		return s, err
	}
	row, err := st.PhotoGet(ctx, id)
	switch {
	case err == nil:
		s.Row = &row
	case !errors.Is(err, ledger.ErrPhotoNotFound):
		return s, err
	}
	h, ok, err := st.PhotoMoveHistory(ctx, id)
	if err != nil {
		return s, err
	}
	if ok {
		s.Ledger = &h
	}
	moves, err := st.ObjectMoveListOfPhoto(ctx, id)
	if err != nil {
		return s, err
	}
	if s.Failures, err = st.FailureListOfPhoto(ctx, id, 20); err != nil {
		return s, err
	}
	if s.Row != nil {
		for _, k := range keysOf(s.Row.Keys) {
			s.RowKeys = append(s.RowKeys, head(ctx, objs, k))
		}
	}
	for _, m := range moves {
		s.Moves = append(s.Moves, Move{ObjectMove: m, OldNow: head(ctx, objs, m.OldKey), NewNow: head(ctx, objs, m.NewKey)})
	}
	s.Next = advise(s)
	return s, nil
}

var (
	uuidID    = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
	integerID = regexp.MustCompile(`^-?[0-9]{1,19}$`)
)

// checkID refuses an id the photos table's id column cannot hold, naming the
// type, rather than letting Postgres fail the query.
func checkID(ctx context.Context, st *ledger.Store, id string) error {
	typ, err := st.PhotoIDType(ctx)
	if err != nil {
		return err
	}
	ok := true
	switch typ {
	case "uuid":
		ok = uuidID.MatchString(id)
	case "bigint", "integer", "smallint":
		ok = integerID.MatchString(id)
	}
	if !ok {
		return fmt.Errorf("photo id %q is not a %s, the type of photos.id: give the application's photo id", id, typ)
	}
	return nil
}

func keysOf(k ledger.Keys) []string {
	out := []string{k.Original}
	for _, p := range []*string{k.Processed, k.Thumbnail} {
		if p != nil && *p != "" {
			out = append(out, *p)
		}
	}
	return out
}

func head(ctx context.Context, objs *objstore.Store, key string) Object {
	o := Object{Key: key}
	if key == "" {
		return o
	}
	info, err := objs.Head(ctx, key)
	switch {
	case err == nil:
		o.Exists, o.Size, o.ETag = true, info.Size, info.ETag
	case !errors.Is(err, objstore.ErrNotFound):
		o.Error = err.Error()
	}
	return o
}

// missingRowKeys lists the keys the row references that S3 does not have:
// the worst thing (a row pointing at nothing), whoever caused it.
func (s Story) missingRowKeys() []string {
	var out []string
	for _, o := range s.RowKeys {
		if !o.Exists && o.Error == "" {
			out = append(out, o.Key)
		}
	}
	return out
}

// advise turns the story into the next steps.
func advise(s Story) []string {
	id := s.PhotoID
	missing := s.missingRowKeys()
	var ours, legacy []string
	for _, k := range missing {
		if strings.HasPrefix(k, "users/") {
			ours = append(ours, k)
		} else {
			legacy = append(legacy, k)
		}
	}
	if len(ours) > 0 {
		out := []string{fmt.Sprintf("BROKEN: the photos row references %d keys S3 does not have: %s", len(ours), strings.Join(ours, " "))}
		for _, m := range s.Moves {
			if m.NewNow.Exists || !m.OldNow.Exists {
				continue
			}
			for _, k := range ours {
				if k == m.NewKey {
					out = append(out, fmt.Sprintf("the legacy object %s still exists: `migratectl rollback --photo %s` points the row back at it", m.OldKey, id))
				}
			}
		}
		return append(out, "then `migratectl verify --deep` to see whether other photos are affected, and keep cleanup from running (`migratectl cleanup` re-verifies, but do not start it)")
	}
	out := adviseByState(s, id)
	if len(legacy) > 0 {
		out = append(out, fmt.Sprintf("the row references legacy keys S3 does not have: %s; keymigrate deletes a legacy key only in cleanup, after the row moved off it: it was gone before (the application, a user, a lifecycle rule); there is nothing to migrate for it", strings.Join(legacy, " ")))
	}
	return out
}

func adviseByState(s Story, id string) []string {
	if s.Row == nil && s.Ledger == nil {
		return []string{fmt.Sprintf("UNKNOWN: no photos row and no ledger row for %q: check the id (the application's photos.id)", id)}
	}
	if s.Ledger == nil {
		if s.Row.Legacy() {
			return []string{"NOT STARTED: the row references legacy keys and no run has enqueued it", fmt.Sprintf("run the producer (a staged run: `producer --photos-from FILE` with %s in FILE)", id)}
		}
		return []string{"NOTHING TO DO: the row references user-scoped keys only (written so by the application) and the migration never touched it"}
	}
	return adviseState(s, id)
}

func adviseState(s Story, id string) []string {
	h := s.Ledger
	switch ledger.State(h.State) {
	case ledger.StateEnqueued, ledger.StateInProgress:
		out := []string{fmt.Sprintf("WAITING: %s in run %s, %d attempts, %d times enqueued again by the sweeper", h.State, h.RunID, h.Attempts, h.Rescued)}
		if h.Rescued >= ledger.MaxRescues {
			out = append(out, "the sweeper gave up on it (its message kept getting lost): read the workers' logs for this photo_id, then `producer --retry-failed` or a new run")
		}
		return append(out, "`migratectl status` shows whether the fleet is paused or waiting for a dependency; a lost message is enqueued again by the sweeper (`migratectl sweep`) once the queue has been empty for --sweep-after")
	case ledger.StateFailed:
		reason := ""
		if h.LastReason != nil {
			reason = *h.LastReason
		}
		return []string{fmt.Sprintf("DEAD-LETTERED: reason %s", reason),
			fmt.Sprintf("`migratectl dlq list --reason %s` shows the others like it; fix the cause (docs/runbook.md, \"The DLQ is filling\"), then `migratectl dlq redrive --reason %s`", reason, reason)}
	case ledger.StateMigrated:
		return []string{"MIGRATED: the row points at its user-scoped copies, which exist", "nothing to do; the legacy objects stay until `migratectl cleanup` (after its grace period)"}
	case ledger.StateCleaned:
		return []string{"CLEANED: migrated, and cleanup deleted the legacy objects no row needed", "nothing to do; a rollback now needs the copies copied back (`migratectl rollback` says how)"}
	case ledger.StateArchived:
		return []string{"ARCHIVED: the row has no owner, so it was not moved", "`migratectl archived report` lists it; `migratectl archived assign` gives it an owner, after which a new producer run moves it"}
	case ledger.StateRolledBack:
		return []string{"ROLLED BACK: the row points at its legacy keys again", "a new run (`producer --new-run`) moves it again; an older run's messages leave it alone"}
	case ledger.StateDeleted:
		return []string{"DELETED BY THE APPLICATION: the row (or its objects) was deleted while migrating; keymigrate brings nothing back", "if the user did not delete it, look in the application's logs"}
	case ledger.StatePurged:
		return []string{"PURGED: an operator purged this ownerless photo (`migratectl archived purge`)"}
	}
	return []string{fmt.Sprintf("state %s", h.State)}
}
