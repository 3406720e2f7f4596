package safetensors

// ReleasePages tells the operating system that the mapped pages of the checkpoint's files
// are not needed for now. Pages touched by reading tensors count in the process's resident
// set for as long as the files stay mapped, so a program that streams a large model through
// memory one layer at a time would otherwise end with the whole model resident. After the
// call they leave the resident set (the page cache keeps them; nothing is written, the
// mapping is read-only) and reading a tensor again maps them back in, so it is always
// safe, also while other goroutines read. Where files are not mapped it does nothing.
func (c *Checkpoint) ReleasePages() {
	for _, s := range c.shards {
		if s.data != nil {
			releasePages(s.data)
		}
	}
}
