package ledgertest

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keymigrate/keymigrate/internal/pipeline/ledger"
)

// The move log is the history of keymigrate.photo_moves that the row alone
// does not keep (it holds only the latest run and the number of attempts):
// a trigger on the table, in a harness's own database, logs every message
// the ledger says was sent for a photo and every delivery a worker began.
// The soak reads it to find messages lost before something healed them
// (internal/harness/soak/lost.go says how it counts). It lives here because
// it names the ledger's table and columns: a migration that renames one
// fails here, in the ledger's tree.

// MoveLogKind is what a move log entry records.
type MoveLogKind string

// The kinds of move log entries; the trigger writes exactly these.
const (
	// LogDelivery: a worker began an attempt (attempts went up by N).
	LogDelivery MoveLogKind = "delivery"
	// LogRecord: a producer recorded the photo as enqueued.
	LogRecord MoveLogKind = "record"
	// LogRedrive: a DLQ redrive put a failed photo back, in the same run.
	LogRedrive MoveLogKind = "redrive"
	// LogRescue: the lost-message sweeper re-enqueued it.
	LogRescue MoveLogKind = "rescue"
)

// moveLogSQL creates the log table and the trigger. A harness's database is
// its own (testenv.New): nothing else sees them.
const moveLogSQL = `
CREATE SCHEMA IF NOT EXISTS soak_audit;
CREATE TABLE IF NOT EXISTS soak_audit.photo_moves_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    photo_id text NOT NULL,
    kind     text NOT NULL,
    run_id   text,
    n        integer NOT NULL DEFAULT 1,
    state    text NOT NULL
);
CREATE OR REPLACE FUNCTION soak_audit.log_photo_move() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_attempts integer := 0;
    old_rescued  integer := 0;
    old_state    text;
    old_run      text;
    old_enqueued timestamptz;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        old_attempts := OLD.attempts; old_rescued := OLD.rescued; old_state := OLD.state;
        old_run := OLD.run_id; old_enqueued := OLD.enqueued_at;
    END IF;
    IF NEW.attempts > old_attempts THEN
        INSERT INTO soak_audit.photo_moves_log (photo_id, kind, run_id, n, state)
        VALUES (NEW.photo_id, 'delivery', NEW.run_id, NEW.attempts - old_attempts, NEW.state);
    END IF;
    -- Every statement that sends a message sets enqueued_at = now() (its
    -- transaction's start): the producer's record, a redrive, a rescue.
    IF NEW.state = 'enqueued' AND NEW.enqueued_at IS NOT NULL AND NEW.enqueued_at IS DISTINCT FROM old_enqueued THEN
        INSERT INTO soak_audit.photo_moves_log (photo_id, kind, run_id, state)
        VALUES (NEW.photo_id,
                CASE WHEN NEW.rescued > old_rescued THEN 'rescue'
                     WHEN old_state = 'failed' AND NEW.run_id IS NOT DISTINCT FROM old_run THEN 'redrive'
                     ELSE 'record' END,
                NEW.run_id, NEW.state);
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS soak_audit_photo_moves ON keymigrate.photo_moves;
CREATE TRIGGER soak_audit_photo_moves AFTER INSERT OR UPDATE ON keymigrate.photo_moves
    FOR EACH ROW EXECUTE FUNCTION soak_audit.log_photo_move();
`

// InstallMoveLog starts the move log (before anything writes the ledger
// whose history is wanted). Installing it again keeps what it logged.
func InstallMoveLog(ctx context.Context, st *ledger.Store) error {
	if _, err := st.Pool().Exec(ctx, moveLogSQL); err != nil {
		return fmt.Errorf("install the move log on keymigrate.photo_moves: %w", err)
	}
	return nil
}

// MoveLogEntry is one entry of the move log.
type MoveLogEntry struct {
	PhotoID string
	Kind    MoveLogKind
	RunID   string // "" when NULL
	N       int    // deliveries begun (LogDelivery); 1 otherwise
	At      time.Time
}

// ReadMoveLog is the move log in the order it was written.
func ReadMoveLog(ctx context.Context, st *ledger.Store) ([]MoveLogEntry, error) {
	return query(ctx, st, "move log of keymigrate.photo_moves", `SELECT photo_id, kind, coalesce(run_id, ''), n, at FROM soak_audit.photo_moves_log ORDER BY id`,
		func(row pgx.Row) (MoveLogEntry, error) {
			var e MoveLogEntry
			err := row.Scan(&e.PhotoID, &e.Kind, &e.RunID, &e.N, &e.At)
			return e, err
		})
}
