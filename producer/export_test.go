package producer

// SetAfterGroup makes p call fn after each checkpointed group, with the photos
// enqueued so far (tests use it to interrupt a run at a known point), and
// returns p. It lives here, in a file only `go test` compiles, so that the
// configuration a user fills in (Config) carries no test signal.
func SetAfterGroup(p *Producer, fn func(enqueuedSoFar int64)) *Producer {
	p.afterGroup = fn
	return p
}
