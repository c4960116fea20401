// Package archtest holds tests of the product's shape rather than its
// behaviour: they parse the source of the product packages (cmd/, producer/,
// worker/, internal/ except internal/harness/) and fail on what would make
// the code harder for a newcomer to read, such as exported functions too long
// to take in at once. It is harness code with no exported identifiers:
// nothing imports it.
package archtest
