package poller

import "math"

// WalkPatch is the patch walker without its size limit, so that the
// fuzzers check its patches on small documents too (diffPatch hands those
// to jsondiff).
func WalkPatch(a, b []byte) (patch []byte, ok bool) { return walkPatch(a, b, math.MaxInt) }

// The scheduler, for its order test.
type (
	Scheduler = scheduler
	Priority  = priority
)

var NewScheduler = newScheduler

const (
	PriorityAdmission = priorityAdmission
	PriorityNudge     = priorityNudge
	PriorityRegular   = priorityRegular
)

// Differ is the diff engine, for its own tests and fuzzers.
type Differ = differ

// NewDiffer is newDiffer.
var NewDiffer = newDiffer
