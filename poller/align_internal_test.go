package poller

import "testing"

// TestAlignWorkBudget: the edit search stops when its comparisons run out,
// whatever the cell budget allows: time, like memory, follows the bodies.
func TestAlignWorkBudget(t *testing.T) {
	const n = 100_000
	calls := 0
	// Equal along most of every diagonal, unequal every 1,000th element:
	// each diagonal's snake is long, and each step starts many.
	eq := func(i, j int) bool { calls++; return (i+j)%1000 != 999 && i%997 != 0 }
	w := &walker{cells: 1 << 30, work: 4 * 2 * n}
	w.align(n, n, eq)
	t.Logf("%d comparisons", calls)
	if calls > 2*4*2*n {
		t.Errorf("%d comparisons, want within the budget of %d", calls, 4*2*n)
	}
}
