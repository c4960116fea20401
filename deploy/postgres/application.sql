-- The application: its photos table, as before the migration; nothing of the
-- ledger (the StorageService reads S3 only).
DO $$ BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO km_app', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO km_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON photos TO km_app;
