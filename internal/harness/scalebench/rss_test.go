package scalebench

import (
	"testing"
	"time"
)

// The quarters tell memory that grows with the work from memory that is
// flat: what the bench's time-limited windows rest on.
func TestRSSQuartersShowGrowth(t *testing.T) {
	watch := func(rss func(i int) int64) rssWatch {
		var w rssWatch
		for i := range 100 {
			w.samples = append(w.samples, rssSample{at: time.Duration(i) * time.Second, rss: rss(i)})
		}
		return w
	}
	flat := watch(func(i int) int64 { return 40<<20 + int64(i%3)<<10 })
	if q := flat.quarters(); q[3]-q[0] > 1<<20 {
		t.Errorf("flat memory read as %v", q)
	}
	growing := watch(func(i int) int64 { return int64(10+i) << 20 })
	q := growing.quarters()
	for i := 1; i < 4; i++ {
		if q[i] <= q[i-1] {
			t.Fatalf("growing memory read as %v: quarter %d not above the one before", q, i)
		}
	}
	if q[3] != 109<<20 || q[0] != 34<<20 {
		t.Errorf("quarters %v: want the largest sample of each quarter (34 MiB first, 109 MiB last)", q)
	}
	if q := (&rssWatch{}).quarters(); q != [4]int64{} {
		t.Errorf("no samples read as %v", q)
	}
}
