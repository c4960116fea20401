package synths3

import (
	"context"
	"strings"
	"time"
)

// UserObject is a user-scoped object the endpoint holds, as a listing (or
// an S3 Inventory report) would show it.
type UserObject struct {
	Key          string
	Size         int64
	ETag         string // without quotes
	LastModified time.Time
	StorageClass string
}

// EachUserObject calls fn for every user-scoped keyspace object the endpoint
// holds now, photo by photo (not in key order: the keyspace does not order
// users/ as a whole, which is why ListObjectsV2 cannot list it). It is what a
// benchmark needs to write an inventory report of the whole bucket.
func (s *Server) EachUserObject(ctx context.Context, fn func(UserObject) error) error {
	for i := range s.ks.Photos() {
		if i%10_000 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		for _, o := range s.ks.Photo(i).Objects {
			if o.UserKey == "" {
				continue
			}
			f, ok := s.lookup(o.UserKey)
			if !ok {
				continue
			}
			err := fn(UserObject{
				Key: o.UserKey, Size: f.size(), ETag: strings.Trim(f.etag(), `"`),
				LastModified: f.lastModified(), StorageClass: o.StorageClass,
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}
