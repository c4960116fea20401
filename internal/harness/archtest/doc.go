// Package archtest holds the tests that keep the architecture as
// docs/architecture.md draws it: which parts may import which, and the size
// limits of the product's exported functions. It has no code of its own.
package archtest
