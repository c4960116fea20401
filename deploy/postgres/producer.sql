-- The producer: reads the photos table and records runs and enqueued photos
-- in the ledger; it changes no photo.
DO $$ BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO km_producer', current_database());
END $$;
GRANT USAGE ON SCHEMA keymigrate TO km_producer;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA keymigrate TO km_producer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA keymigrate TO km_producer;
ALTER DEFAULT PRIVILEGES FOR ROLE km_operator IN SCHEMA keymigrate GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO km_producer;
ALTER DEFAULT PRIVILEGES FOR ROLE km_operator IN SCHEMA keymigrate GRANT USAGE, SELECT ON SEQUENCES TO km_producer;
GRANT USAGE ON SCHEMA public TO km_producer;
GRANT SELECT ON photos TO km_producer;
