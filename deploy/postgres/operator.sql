-- The operator (migratectl): runs `migratectl setup`, which creates the
-- keymigrate schema and its tables, so it owns the ledger; plan's report
-- queries use temporary tables; rollback puts key columns back; archived
-- assign gives an ownerless photo its owner. Run as the database owner or an
-- admin, after creating the role (docs/iam.md, "Postgres").
DO $$ BEGIN
  EXECUTE format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO km_operator', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO km_operator;
GRANT SELECT ON photos TO km_operator;
GRANT UPDATE (original_key, processed_key, thumbnail_key, status, owner_id) ON photos TO km_operator;
