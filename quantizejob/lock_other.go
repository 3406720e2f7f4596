//go:build !unix

package quantizejob

// LockOutput does nothing where flock(2) is not available: concurrent runs into one output
// are not detected there.
func LockOutput(out string) (unlock func(), err error) { return func() {}, nil }

// LockIsNoop reports that LockOutput does nothing on this system.
const LockIsNoop = true
