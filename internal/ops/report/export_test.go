package report

// SetPageSize lets tests read the ledger in small pages.
func SetPageSize(n int) (restore func()) {
	old := pageSize
	pageSize = n
	return func() { pageSize = old }
}
