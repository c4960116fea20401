// Package postgres holds the Postgres grants of each keymigrate role as SQL
// (operator.sql, worker.sql, producer.sql, application.sql; docs/iam.md,
// "Postgres"). Its test applies them to a fresh database and runs each
// component with only its own.
package postgres
