-- +goose Up
-- A lease per shard of a pass (cleanup --shard i/n): two processes started
-- with the same shard of the same pass (an operator's slip, or a Kubernetes
-- Job pod retried while the old pod still runs) would both walk it, both
-- advance its cursor and add their pages to its tally. The process running a
-- shard holds its lease: holder names it, lease_until is when the lease lapses
-- unless renewed (Postgres' clock, the same for every machine). A second
-- process is refused while the lease holds; a lease whose holder died lapses
-- and the next process takes the shard over from its cursor. Both NULL: no
-- process holds the shard.
ALTER TABLE keymigrate.pass_cursors ADD COLUMN holder text;
ALTER TABLE keymigrate.pass_cursors ADD COLUMN lease_until timestamptz;

-- +goose Down
ALTER TABLE keymigrate.pass_cursors DROP COLUMN lease_until;
ALTER TABLE keymigrate.pass_cursors DROP COLUMN holder;
