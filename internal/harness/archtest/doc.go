// Package archtest holds tests of the product's shape rather than its
// behaviour: which parts may import which (as docs/architecture.md draws
// them), exported functions short enough for a newcomer to take in at
// once, SQL on the ledger's tables only in the ledger, no comparison of a
// typed value's spelling or an error's text, and no flag in a library's
// error. It parses the source and reads `go list`; it is harness code with no
// exported identifiers, and nothing imports it.
package archtest
