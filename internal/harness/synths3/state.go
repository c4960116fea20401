package synths3

import (
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is which objects exist before any request changed them.
type Mode int

// The modes.
const (
	// Legacy: only the legacy objects exist (before the migration).
	Legacy Mode = iota
	// Migrated: the legacy objects and the user-scoped copies of every photo
	// with an owner exist (after the fleet finished, before cleanup).
	Migrated
)

// String names the mode, for logs.
func (m Mode) String() string {
	if m == Migrated {
		return "migrated"
	}
	return "legacy"
}

// bitset is a fixed-size set of object indexes, safe for concurrent use.
type bitset []atomic.Uint64

func newBitset(n int64) bitset { return make(bitset, (n+63)/64) }

func (b bitset) get(i int64) bool { return b[i/64].Load()&(1<<(i%64)) != 0 }

func (b bitset) set(i int64, v bool) {
	if v {
		b[i/64].Or(1 << (i % 64))
	} else {
		b[i/64].And(^uint64(1 << (i % 64)))
	}
}

// state is what requests changed: two bits per object slot (2 ×
// SlotsPerPhoto bits a photo: 1.75 MB per million photos), and a small,
// bounded store of objects outside the keyspace.
type state struct {
	mode Mode
	// legacyGone marks legacy objects deleted.
	legacyGone bitset
	// userFlip marks user-scoped objects whose presence differs from the
	// mode's (created by a copy in Legacy mode, deleted in Migrated mode).
	userFlip bitset
	// locks serialise the conditional writes of one photo (a check then a
	// change); reads need none.
	locks  [256]sync.Mutex
	extras extras
}

func newState(photos int64, mode Mode, maxExtras int) *state {
	return &state{
		mode:       mode,
		legacyGone: newBitset(photos * SlotsPerPhoto),
		userFlip:   newBitset(photos * SlotsPerPhoto),
		extras:     extras{max: maxExtras, objects: map[string]*extra{}},
	}
}

func index(a attrs, s Slot) int64 { return a.i*SlotsPerPhoto + int64(s) }

// present reports whether the keyspace object (a, s) exists at its legacy
// key (user false) or its user-scoped key (user true). The caller knows the
// photo has the object (attrs.has) and, for user, a user-scoped key.
func (st *state) present(a attrs, s Slot, user bool) bool {
	if user {
		return (st.mode == Migrated) != st.userFlip.get(index(a, s))
	}
	return !st.legacyGone.get(index(a, s))
}

// setPresent makes the object exist or not.
func (st *state) setPresent(a attrs, s Slot, user, v bool) {
	if user {
		st.userFlip.set(index(a, s), v != (st.mode == Migrated))
		return
	}
	st.legacyGone.set(index(a, s), !v)
}

func (st *state) lock(a attrs) *sync.Mutex { return &st.locks[a.i%int64(len(st.locks))] }

// extra is an object outside the keyspace: the capability probe's, plan's
// calibration copies, anything a test writes. Its bytes are held (body), or
// are those of a keyspace object it was copied from (seed).
type extra struct {
	size         int64
	etag         string
	contentType  string
	headers      map[string]string // Cache-Control, Content-Disposition, …, as sent
	metadata     map[string]string // lower-case names
	storageClass string
	checksums    map[string]string // algorithm (CRC64NVME, …) to base64 value
	lastModified time.Time
	body         []byte
	seed         uint64
	fromKeyspace bool
}

// extras holds the objects outside the keyspace, in key order, at most max
// of them: a load stand-in must not grow with what its clients write.
type extras struct {
	mu      sync.RWMutex
	max     int
	objects map[string]*extra
	keys    []string // sorted
}

// errExtrasFull is returned when a write would hold more than max extras.
type errExtrasFull struct{ max int }

func (e errExtrasFull) Error() string {
	return fmt.Sprintf("the synthetic endpoint holds at most %d objects outside its keyspace", e.max)
}

func (x *extras) get(key string) (*extra, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.objects[key]
	return e, ok
}

// put stores e at key if check (called under the lock with the current
// object, nil if none) allows it.
func (x *extras) put(key string, e *extra, check func(cur *extra) error) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	cur := x.objects[key]
	if err := check(cur); err != nil {
		return err
	}
	if cur == nil {
		if len(x.objects) >= x.max {
			return errExtrasFull{x.max}
		}
		i := sort.SearchStrings(x.keys, key)
		x.keys = append(x.keys, "")
		copy(x.keys[i+1:], x.keys[i:])
		x.keys[i] = key
	}
	x.objects[key] = e
	return nil
}

// remove deletes key if check allows it; it reports whether key existed.
func (x *extras) remove(key string, check func(cur *extra) error) (bool, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	cur, ok := x.objects[key]
	if err := check(cur); err != nil {
		return ok, err
	}
	if !ok {
		return false, nil
	}
	delete(x.objects, key)
	i := sort.SearchStrings(x.keys, key)
	x.keys = append(x.keys[:i], x.keys[i+1:]...)
	return true, nil
}

// after returns up to n keys greater than after that start with prefix, in
// order.
func (x *extras) after(prefix, after string, n int) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	from := max(after, prefix)
	i := sort.SearchStrings(x.keys, from)
	var out []string
	for ; i < len(x.keys) && len(out) < n; i++ {
		k := x.keys[i]
		if k <= after {
			continue
		}
		if len(k) < len(prefix) || k[:len(prefix)] != prefix {
			if k > prefix {
				break
			}
			continue
		}
		out = append(out, k)
	}
	return out
}
