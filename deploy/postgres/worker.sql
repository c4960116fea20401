-- The worker: reads and writes the ledger (it does not change its schema),
-- reads the photos table and swaps a photo's key columns or archives it.
-- Run after `migratectl setup` created the keymigrate schema (the default
-- privileges below cover the tables later migrations add).
DO $$ BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO km_worker', current_database());
END $$;
GRANT USAGE ON SCHEMA keymigrate TO km_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA keymigrate TO km_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA keymigrate TO km_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE km_operator IN SCHEMA keymigrate GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO km_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE km_operator IN SCHEMA keymigrate GRANT USAGE, SELECT ON SEQUENCES TO km_worker;
GRANT USAGE ON SCHEMA public TO km_worker;
GRANT SELECT ON photos TO km_worker;
GRANT UPDATE (original_key, processed_key, thumbnail_key, status) ON photos TO km_worker;
