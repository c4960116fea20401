package ledger

// SetInventoryBeforeCopy makes s call fn between the claim of a data file and
// its COPY (tests only).
func SetInventoryBeforeCopy(s *Store, fn func(InventoryFile)) { inventoryBeforeCopy.Store(s, fn) }
