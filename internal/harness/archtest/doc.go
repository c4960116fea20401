// Package archtest holds tests of the product's shape rather than its
// behaviour: which parts may import which (as docs/architecture.md draws
// them), and exported functions short enough for a newcomer to take in at
// once. It parses the source and reads `go list`; it is harness code with no
// exported identifiers, and nothing imports it.
package archtest
