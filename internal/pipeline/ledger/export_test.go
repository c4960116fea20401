package ledger

// SetInventoryBeforeCopy makes s call fn between the claim of a data file and
// its COPY (tests only).
func SetInventoryBeforeCopy(s *Store, fn func(InventoryFile)) { inventoryBeforeCopy.Store(s, fn) }

// PackAuditEmpty is a valid packed audit row holding no object moves (the
// plan test seeds object_audit with it).
func PackAuditEmpty() ([]byte, error) { return packAudit([]auditJSON{}) }
