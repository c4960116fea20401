package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// errNothingToWrite ends a twoTrips transaction after its checks, with
// nothing written; the caller wraps it to say why.
var errNothingToWrite = errors.New("nothing to write")

// twoTrips runs one transaction in two round trips to Postgres instead of one
// per statement: BEGIN and the statements checks queues go in one pipelined
// batch, and only if read (which reads their results in order) returns nil,
// the statements writes queues and COMMIT go in a second. The statements run
// one after the other in the same transaction, exactly as they would one call
// at a time; only the waits between them are gone. A photo's swap was seven
// round trips (BEGIN, five statements, COMMIT), each a wake-up and two
// messages on both sides; on AWS each is a network round trip to the database
// inside the photo's latency.
//
// An error from either read (errNothingToWrite for a transaction its checks
// ended) rolls the transaction back and is returned. If the ROLLBACK itself
// cannot be sent the connection is left in its transaction, and the pool
// closes such a connection on release rather than reuse it.
func (s *Store) twoTrips(ctx context.Context,
	checks func(b *pgx.Batch) (read func(pgx.BatchResults) error),
	writes func(b *pgx.Batch) (read func(pgx.BatchResults) error),
) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire a connection: %w", err)
	}
	defer conn.Release()
	rollback := func(cause error) error {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK") // see above if it fails
		return cause
	}
	send := func(b *pgx.Batch, read func(pgx.BatchResults) error) error {
		br := conn.SendBatch(ctx, b)
		err := read(br)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		return err
	}

	first := &pgx.Batch{}
	first.Queue("BEGIN")
	readChecks := checks(first)
	err = send(first, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		return readChecks(br)
	})
	if err != nil {
		return rollback(err)
	}

	second := &pgx.Batch{}
	readWrites := writes(second)
	second.Queue("COMMIT")
	err = send(second, func(br pgx.BatchResults) error {
		if err := readWrites(br); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	})
	if err != nil {
		// A statement that failed made Postgres skip the rest of the batch,
		// COMMIT included: the transaction is still open, aborted.
		return rollback(err)
	}
	return nil
}
