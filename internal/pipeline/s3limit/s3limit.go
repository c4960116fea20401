// Package s3limit paces a process's S3 requests when S3 asks it to slow down,
// and finds the rate S3 accepts instead of collapsing below it.
//
// The SDK's adaptive retry mode keeps a client-side rate limiter that halves
// the send rate at every throttling response; with 5% of requests answered
// 503 SlowDown (S3 does that at random while it repartitions a prefix), a
// fleet fell from about 600 to about 100 requests/s. This limiter reacts to
// the share of throttled requests over a window instead of to each one:
//   - above MaxThrottled (10%) of a window's requests throttled, the limit
//     falls in proportion (by half the share), starting from the rate
//     actually sent: under a hard limit it settles where about a tenth of
//     the requests are throttled and retried, so the successful rate is the
//     limit itself;
//   - at or below that share it rises by 5% a window, and a limit that saw no
//     throttling for Relax (5 s) is lifted altogether: the fleet recovers
//     within seconds when S3's limit goes away;
//   - a few random SlowDowns (5% of requests) never lower it: they are retried.
//
// Each process runs its own limiter and needs no coordination: S3 throttles a
// prefix, so every pod writing to it sees about the same share of throttled
// requests, and each settles on its part of the rate. Every attempt (retries
// included) waits for the limiter.
package s3limit

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Options tune a Limiter. Zero values take the defaults in brackets.
type Options struct {
	Window       time.Duration // [1s] how often the limit is adjusted
	MaxThrottled float64       // [0.1] share of throttled requests tolerated
	Relax        time.Duration // [5s] a limit with no throttling this long is lifted
	Floor        float64       // [1] requests/s the limit never goes below
	// OnChange, if set, is called with the new limit (0: none) when it changes.
	OnChange func(limit float64)
}

// Limiter is one process's S3 pace.
type Limiter struct {
	o    Options
	lim  *rate.Limiter
	mu   sync.Mutex
	win  time.Time
	sent int
	thr  int
	last time.Time // last throttling response
}

// New returns an unlimited Limiter.
func New(o Options) *Limiter {
	if o.Window <= 0 {
		o.Window = time.Second
	}
	if o.MaxThrottled <= 0 {
		o.MaxThrottled = 0.1
	}
	if o.Relax <= 0 {
		o.Relax = 5 * time.Second
	}
	if o.Floor <= 0 {
		o.Floor = 1
	}
	return &Limiter{o: o, lim: rate.NewLimiter(rate.Inf, 1), win: time.Now()}
}

// Wait blocks until the next request may be sent.
func (l *Limiter) Wait(ctx context.Context) error { return l.lim.Wait(ctx) }

// Limit is the current limit in requests/s (0: none).
func (l *Limiter) Limit() float64 {
	if r := l.lim.Limit(); r != rate.Inf {
		return float64(r)
	}
	return 0
}

// Done records the outcome of one request.
func (l *Limiter) Done(throttled bool) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent++
	if throttled {
		l.thr++
		l.last = now
	}
	if elapsed := now.Sub(l.win); elapsed >= l.o.Window {
		l.adjust(now, elapsed)
	}
}

func (l *Limiter) adjust(now time.Time, elapsed time.Duration) {
	share := float64(l.thr) / float64(max(l.sent, 1))
	sentRate := float64(l.sent) / elapsed.Seconds()
	cur := l.lim.Limit()
	next := cur
	switch {
	case share > l.o.MaxThrottled:
		base := float64(cur)
		if cur == rate.Inf || base > sentRate {
			base = sentRate
		}
		next = rate.Limit(math.Max(base*(1-share/2), l.o.Floor))
	case cur != rate.Inf && now.Sub(l.last) >= l.o.Relax:
		next = rate.Inf
	case cur != rate.Inf:
		next = cur*1.05 + 1
	}
	l.win, l.sent, l.thr = now, 0, 0
	if next == cur {
		return
	}
	l.lim.SetLimit(next)
	if next != rate.Inf {
		l.lim.SetBurst(max(1, int(float64(next)/10)))
	}
	if l.o.OnChange != nil {
		l.o.OnChange(l.Limit())
	}
}
