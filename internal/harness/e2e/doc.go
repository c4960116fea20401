// Package e2e holds end-to-end tests that run the built binaries (producer,
// worker, migratectl) as real processes against the real servers: a whole
// migration, SIGTERM in the middle of a batch, and SIGKILL at arbitrary points.
package e2e
