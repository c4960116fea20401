package appsim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/keymigrate/keymigrate/internal/app/storage"
)

// The application's list of a user's photos (issue 18, item 5): while the
// backfill runs, a photo is either under users/{user}/raw/ (uploaded under
// Phase 1, or migrated) or still a legacy row, so the application lists
// both: first the user's rows whose original is not user-scoped, then
// storage.ListPhotos (every page). In that order, a photo the worker swaps in
// between is in one of them (its copies land before its swap). What it is
// owed: every photo the model gives to the user, whose row existed when the
// listing began, not deleted, and with no change of owner, removal or gift
// of its owner, or deletion overlapping the listing, is listed. A listing
// that misses one is made once more (a rollback --delete-new in between
// moves the row back to its legacy keys and then deletes the copies); a
// photo missing from both is a missing read. A photo listed that the model
// does not give to the user (an account merge's copies landing, a creation
// in flight) is counted, not judged: users_prefix_exact judges what is left
// under users/ at the end.

// listing names what a listing read for reports.
func listing(user string) string { return "listing of user " + user }

// listRandom lists a random user's photos and judges the listing.
func (s *Sim) listRandom(ctx context.Context, r *rand.Rand) {
	user := s.user(r)
	rs := time.Now()
	listed, err := s.listPhotos(ctx, user)
	retried := false
	if err == nil && len(s.unlisted(user, listed, rs)) > 0 {
		retried = true
		var again map[string]bool
		if again, err = s.listPhotos(ctx, user); err == nil {
			for id := range again {
				listed[id] = true
			}
		}
	}
	if ctx.Err() != nil {
		return
	}
	var out []ReadResult
	switch {
	case err != nil && isProxied(ctx) && Unavailable(err):
		// Not made through the faults even with retries: counted.
		out = []ReadResult{{Object: listing(user), Verdict: ReadUnavailable, Error: err.Error(), At: rs, Proxied: true}}
	case err != nil:
		out = []ReadResult{{Object: listing(user), Verdict: ReadError, Error: err.Error(), At: rs}}
	default:
		out = s.judgeListing(user, listed, rs, time.Now(), retried)
	}
	for i := range out {
		out[i].Proxied = isProxied(ctx)
	}
	for _, res := range out {
		s.stats.listed(res)
	}
}

// listPhotos is the application's list of user's photos: its legacy rows,
// then its originals under users/.
func (s *Sim) listPhotos(ctx context.Context, user string) (map[string]bool, error) {
	out := map[string]bool{}
	rows, err := s.deps.Pool.Query(ctx, `SELECT id::text FROM photos WHERE owner_id = $1 AND original_key NOT LIKE 'users/%'`, user)
	if err != nil {
		return nil, fmt.Errorf("list the legacy rows of user %s: %w", user, err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list the legacy rows of user %s: %w", user, err)
		}
		out[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list the legacy rows of user %s: %w", user, err)
	}
	cursor := ""
	for {
		var page storage.PhotoPage
		err := s.retryApp(ctx, func() error {
			var err error
			page, err = s.store(ctx).ListPhotos(ctx, user, cursor, 1000)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, p := range page.Photos {
			out[p.PhotoID] = true
		}
		if page.Next == "" {
			return out, nil
		}
		cursor = page.Next
	}
}

// unlisted are the photos a listing of user that began at rs owes and
// listed lacks (judged with the model as it is now).
func (s *Sim) unlisted(user string, listed map[string]bool, rs time.Time) []string {
	return Unlisted(s.states(), user, listed, rs, time.Now())
}

// judgeListing turns a listing made from rs to re into judged reads: one
// missing read per photo owed and not listed, else one ok read for the whole
// listing; the photos listed that were not owed are counted as a note.
// retried says whether the listing was made twice.
//
// The model is read after the listing ended, and a change of owner that
// began after re and ended before that read shows in it (the photo now the
// user's) with no event overlapping [rs, re]: the listing is judged up to
// the end of its snapshot instead, so that such a change is not taken for a
// missing read (the 30-minute soak, seed 249867: photo fc17309b, F18b).
func (s *Sim) judgeListing(user string, listed map[string]bool, rs, re time.Time, retried bool) []ReadResult {
	states := s.states()
	if now := time.Now(); now.After(re) {
		re = now
	}
	missing := Unlisted(states, user, listed, rs, re)
	owed := map[string]bool{}
	for _, st := range states {
		if st.Owner != nil && *st.Owner == user && !st.Deleted {
			owed[st.ID] = true
		}
	}
	for id := range listed {
		if !owed[id] {
			s.stats.note("listing_extra_photo")
		}
	}
	if len(missing) == 0 {
		return []ReadResult{{Object: listing(user), Verdict: ReadOK, At: rs}}
	}
	out := make([]ReadResult, 0, len(missing))
	for _, id := range missing {
		what := "the photo is neither among the user's legacy rows nor under users/" + user + "/raw/"
		if retried {
			what += ", twice"
		}
		out = append(out, ReadResult{PhotoID: id, Object: listing(user), Verdict: ReadMissing, Retried: retried, At: rs, Error: what})
	}
	return out
}

// states is a copy of every photo's model.
func (s *Sim) states() []PhotoState {
	ids := s.model.IDs()
	out := make([]PhotoState, 0, len(ids))
	for _, id := range ids {
		if st, ok := s.model.State(id); ok {
			out = append(out, st)
		}
	}
	return out
}

// Unlisted are the photos of states that a listing of user's photos made
// during [rs, re] owes and listed lacks: the user owns it, it is not
// deleted, the model learnt of it before rs (its row existed), and no change
// of its owner or deletion overlaps [rs, re].
func Unlisted(states []PhotoState, user string, listed map[string]bool, rs, re time.Time) []string {
	var out []string
	for _, st := range states {
		if st.Deleted || st.Owner == nil || *st.Owner != user || !st.Added.Before(rs) || listed[st.ID] {
			continue
		}
		overlaps := false
		for _, e := range st.Events {
			if e.Start.Before(re) && (e.End.IsZero() || e.End.After(rs)) {
				overlaps = true
			}
		}
		if !overlaps {
			out = append(out, st.ID)
		}
	}
	return out
}
