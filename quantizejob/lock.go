package quantizejob

// BusyError is LockOutput's refusal: another process holds the output's lock.
type BusyError struct{ Err error }

func (e *BusyError) Error() string { return e.Err.Error() }
func (e *BusyError) Unwrap() error { return e.Err }
